r"""Writes a training checkpoint's weights alone, for sharing (model_zoo/).

  python -m fast_seg.tools.weights_only --config_path runs/X/pipeline.config \
      --checkpoint runs/X/best --output_dir model_zoo/camvid/X [--dtype float16]

The output folder gets `model.index` / `model.data-*` (every weight of the
training model under its checkpoint key, plus the step; no optimizer state),
a `checkpoint` index so the folder itself can be given as a checkpoint, and
the `pipeline.config`. eval.py, export.py, compress.py, predict.py's exports
and fine_tune_checkpoint read it like any checkpoint. float16 storage halves
the size; the weights are widened back to float32 when restored, and the
tool reports how far the restored model's probabilities move because of it.
"""

import os

from absl import flags
import numpy as np
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.utils import checkpoint_util
from fast_seg.utils import cli
from fast_seg.utils import config_util

PREFIX = "model"
DTYPES = {"float16": tf.float16, "float32": tf.float32}

FLAGS = flags.FLAGS


def _define_flags():
  cli.define_config_flags()
  flags.DEFINE_string("checkpoint", None,
                      "Checkpoint prefix or directory (its latest).")
  flags.DEFINE_string("output_dir", None,
                      "Folder for model.* and pipeline.config.")
  flags.DEFINE_enum("dtype", "float16", list(DTYPES),
                    "Storage type of float weights.")
  flags.mark_flags_as_required(["checkpoint", "output_dir"])


def _weighted_layers(model):
  return [layer for layer in model.keras_model.layers if layer.weights]


def _probabilities(model, images):
  logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
  return model.postprocess(logits, tf.shape(images)[1:3], with_probabilities=True)


def write(pipeline_config, checkpoint, output_dir, dtype="float16"):
  """Writes output_dir/model.* and pipeline.config; checks the round trip.

  Returns:
    dict: prefix, num_weights, bytes (of model.*), step, max_probability_diff
    and label_agreement of the restored model against the source checkpoint
    on a random 96x128 image.
  """
  source_path = checkpoint_util.resolve_checkpoint(checkpoint)
  source = model_builder.build(pipeline_config.model)
  checkpoint_util.restore_layers(_weighted_layers(source), source_path)
  step = checkpoint_util.checkpoint_step(source_path)
  prefix = os.path.join(output_dir, PREFIX)
  count = checkpoint_util.write_weights_only(
      _weighted_layers(source), prefix, DTYPES[dtype], step=step)
  checkpoint_util.write_checkpoint_index(output_dir, PREFIX)
  config_util.save_pipeline_config(pipeline_config, output_dir)

  restored = model_builder.build(pipeline_config.model)
  checkpoint_util.restore_layers(_weighted_layers(restored), prefix)
  images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, 96, 128, 3)),
                       tf.uint8)
  expected, got = _probabilities(source, images), _probabilities(restored, images)
  probabilities = fields.PredictionFields.probabilities
  labels = fields.PredictionFields.labels
  size = sum(os.path.getsize(path) for path in tf.io.gfile.glob(prefix + ".*"))
  return {
      "prefix": prefix, "num_weights": count, "bytes": size, "step": step,
      "source": source_path,
      "max_probability_diff": float(np.abs(
          got[probabilities].numpy() - expected[probabilities].numpy()).max()),
      "label_agreement": float(np.mean(
          got[labels].numpy() == expected[labels].numpy())),
  }


def main(argv):
  del argv
  config = cli.load_config(FLAGS.config_path)
  result = write(config, FLAGS.checkpoint, FLAGS.output_dir, FLAGS.dtype)
  print(f"wrote {result['prefix']} ({result['num_weights']} weights of step "
        f"{result['step']} from {result['source']}, {FLAGS.dtype}, "
        f"{result['bytes'] / 1e6:.2f} MB) and pipeline.config; restored vs "
        f"source on a random image: max probability difference "
        f"{result['max_probability_diff']:.2e}, labels "
        f"{100 * result['label_agreement']:.2f}% equal")


def command():
  """The fast-seg-weights-only command, and python -m
  fast_seg.tools.weights_only.

  The flags are defined here, not at import (see import_weights.command).
  """
  _define_flags()
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
