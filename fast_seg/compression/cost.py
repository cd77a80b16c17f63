"""What a pruning budget counts: measured latency on a runtime, or FLOPs.

Both are read off the real model: latency by exporting it to the runtime and
timing it on this machine (export/latency.py), FLOPs by counting the frozen
inference graph (multiply-add = 2), as compress.py's report does.

Latency on a shared host drifts by tens of percent within minutes, more
than the differences a pruning search must see. So the unpruned model is
measured once as the reference, and every other model is timed alongside
it, run for run in one fresh process: its cost is the median of the per-run
ratios times the reference's latency. A slow minute slows both sides of a
ratio alike.

The exports resize every logit map (labels_method 'resize'): the runs take
random pixels, on which the 'boundary' tail's cost would follow whichever
branch each width's noise happens to take; 'resize' costs the same for
every width, so the search compares the networks.
"""

from fast_seg.compression import compress_lib
from fast_seg.export import full_resolution_labels
from fast_seg.export import latency

LATENCY = "latency"
FLOPS = "flops"


class Cost:
  """How models are costed: in ms on a runtime, or in GFLOPs.

  Attributes:
    kind: LATENCY (milliseconds) or FLOPS.
    input_shape: (N, H, W, 3) the model is exported, timed or counted at.
    runtime: for LATENCY, one of latency.RUNTIMES.
    runs: timed runs per measurement (twice as many for the reference).
  """

  def __init__(self, kind, input_shape, runtime=latency.TFLITE_INT8, runs=5):
    if kind not in (LATENCY, FLOPS):
      raise ValueError(f"cost kind must be {LATENCY} or {FLOPS}, got {kind}")
    if kind == LATENCY:
      latency.check_runtime(runtime)
    if runs < 1:
      raise ValueError(f"--latency_runs must be >= 1, got {runs}")
    self.kind, self.input_shape = kind, tuple(input_shape)
    self.runtime, self.runs = runtime, runs
    self._reference = None
    self._reference_ms = None

  @property
  def unit(self):
    return "ms" if self.kind == LATENCY else "GFLOPs"

  def describe(self):
    size = f"{self.input_shape[1]}x{self.input_shape[2]}"
    if self.kind == LATENCY:
      return (f"latency on {self.runtime} at {size}, batch "
              f"{self.input_shape[0]}, {self.runs} runs alongside the "
              "unpruned model")
    return f"GFLOPs at {size} (multiply-add = 2)"

  def _export(self, model):
    return latency.Exported(model, self.runtime, self.input_shape,
                            labels_method=full_resolution_labels.RESIZE)

  def reference(self, model, known=None):
    """Costs the unpruned model; later latencies are measured against it.

    known: its latency as measured before (a saved table), kept instead of
    timing it again so that new figures agree with the old ones.
    """
    if self.kind == FLOPS:
      return self.of(model)
    if self._reference is not None:
      self._reference.close()
    self._reference = self._export(model)
    self._reference_ms = known or self._reference.time(
        runs=2 * self.runs)["median"]
    return self._reference_ms

  def of(self, model):
    """The model's cost in `unit`."""
    if self.kind == FLOPS:
      return compress_lib.count_flops(model, self.input_shape) / 1e9
    exported = self._export(model)
    try:
      if self._reference is None:
        return exported.time(runs=self.runs)["median"]
      timing = exported.time(runs=self.runs, alongside=self._reference)
      return timing["ratio"] * self._reference_ms
    finally:
      exported.close()
