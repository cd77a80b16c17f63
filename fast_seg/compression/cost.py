"""What a pruning budget counts: measured latency on a runtime, or FLOPs.

Both are read off the real model: latency by exporting it to the runtime and
timing it on this machine (export/latency.py), FLOPs by counting the frozen
inference graph (multiply-add = 2), as compress.py's report does.
"""

import dataclasses

from fast_seg.compression import compress_lib
from fast_seg.export import latency

LATENCY = "latency"
FLOPS = "flops"


@dataclasses.dataclass(frozen=True)
class Cost:
  """How one model is costed.

  Attributes:
    kind: LATENCY (milliseconds, median of `runs`) or FLOPS.
    input_shape: (N, H, W, 3) the model is exported, timed or counted at.
    runtime: for LATENCY, one of latency.RUNTIMES.
    runs: timed runs per measurement (the median is the cost).
  """
  kind: str
  input_shape: tuple
  runtime: str = latency.TFLITE_INT8
  runs: int = 5

  def __post_init__(self):
    if self.kind not in (LATENCY, FLOPS):
      raise ValueError(f"cost kind must be {LATENCY} or {FLOPS}, got "
                       f"{self.kind}")
    if self.kind == LATENCY:
      latency.check_runtime(self.runtime)
    if self.runs < 1:
      raise ValueError(f"--latency_runs must be >= 1, got {self.runs}")

  @property
  def unit(self):
    return "ms" if self.kind == LATENCY else "GFLOPs"

  def describe(self):
    size = f"{self.input_shape[1]}x{self.input_shape[2]}"
    if self.kind == LATENCY:
      return (f"latency on {self.runtime} at {size}, batch "
              f"{self.input_shape[0]}, median of {self.runs} runs")
    return f"GFLOPs at {size} (multiply-add = 2)"

  def of(self, model):
    """The model's cost in `unit`."""
    if self.kind == LATENCY:
      return latency.measure(model, self.runtime, self.input_shape,
                             runs=self.runs)["median"]
    return compress_lib.count_flops(model, self.input_shape) / 1e9
