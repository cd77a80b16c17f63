"""Params, FLOPs, sizes and latency of models built from pipeline configs.

  python -m fast_seg.tools.benchmark --configs a.config,b.config \
      --output_json bench_output/benchmark.json

The modules, from one path of one model up to the command:
  machine         the device, the versions, the machine's own ceiling
  path_timing     one model timed on every latency path at one batch size
  labels_methods  the labels tails timed run for run against 'resize'
  config_row      one config measured into its report row
  published       the docs' latencies scaled to this machine's ceiling, and
                  whether that ceiling moved during the run
  runner          the whole run: the machine, each config, the JSON report
  tables          the report as markdown tables
  cli             the command's flags and main (its usage: cli.py)

The package re-exports its Python entry points (a run, one config's row,
the tables), so `from fast_seg.tools import benchmark` keeps giving them,
and `command`, which fast-seg-benchmark scripts installed before it moved to
cli.py import from here; the tests import the modules themselves.
"""

from fast_seg.tools.benchmark.cli import command
from fast_seg.tools.benchmark.config_row import benchmark_config
from fast_seg.tools.benchmark.runner import run_benchmark
from fast_seg.tools.benchmark.tables import format_table
