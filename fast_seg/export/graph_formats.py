"""The two TensorFlow formats every export writes: the SavedModel, which the
converters start from, and the optimized frozen graph."""

import tensorflow as tf

from fast_seg.export import formats
from fast_seg.export import inference_graph
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.export import size_report


def write_saved_model(job):
  """saved_model/: the served function and the model's variables."""
  inference_graph.save_saved_model(job.model, job.serve, job.saved_model_dir)
  got = runtimes.run_once(job.saved_model_dir, job.check_input)
  return {"saved_model": {"path": job.saved_model_dir,
                          **size_report.file_sizes(job.saved_model_dir),
                          **job.agreement(got)}}


def write_frozen_graph(job):
  """frozen_inference_graph.pb, batch norms and constants folded."""
  optimized = inference_graph.optimize_frozen_graph(job.frozen_graph)
  left = inference_graph.batch_norms(optimized)
  if left:
    # The one line about folding (TensorFlow's own, a line per batch norm
    # behind a dilated conv that is folded next, is dropped by utils/cli).
    job.log(f"  frozen graph: {len(left)} batch norm(s) not folded into a "
            f"conv, each left as a per-channel scale and shift ({left[0]}"
            f"{', ...' if len(left) > 1 else ''})")
  with tf.io.gfile.GFile(job.frozen_graph_path, "wb") as f:
    f.write(optimized.SerializeToString())
  got = runtimes.run_once(optimized, job.check_input)
  return {"frozen_graph": {
      "path": job.frozen_graph_path,
      **size_report.file_sizes(job.frozen_graph_path),
      "op_count": len(optimized.node),
      "op_count_before_folding": len(job.frozen_graph.node),
      "batch_norms_left": len(left),
      **job.agreement(got)}}


formats.register("saved_model", write_saved_model, (serving.SAVED_MODEL_DIR,),
                 flexible_input=True, rank=0)
formats.register("frozen_graph", write_frozen_graph,
                 (serving.FROZEN_GRAPH_NAME,), flexible_input=True, rank=1)
