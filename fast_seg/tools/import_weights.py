r"""Imports a model trained by another project as a fast_seg checkpoint.

  python -m fast_seg.tools.import_weights --from tf1_fast_semantic_segmentation \
      --input old/train/model.ckpt-200000 \
      --config_path configs/icnet_resnet50_0.5_cityscapes_1024.config \
      --output_dir imported/icnet_0.5

(its PSPNet50 likewise, with configs/pspnet50_1.0_cityscapes_713.config).
The output folder gets `model.index` / `model.data-*` (every weight of the
model under its checkpoint key, no optimizer state), a `checkpoint` index and
the `pipeline.config` that reproduces the other project's graph: eval.py,
export.py, compress.py, predict.py and fine-tuning (fine_tune_checkpoint)
read it like any fast_seg checkpoint.

Every weight the model needs is looked up by a name map (third_party/) and
its shape checked; every variable of the file must be used, except training
state (step, optimizer slots). Anything else stops the import with one line
naming the variables, before anything is written.
"""

import collections
import os

from absl import flags
import numpy as np
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.meta_architectures import pspnet
from fast_seg.protos import model_pb2
from fast_seg.utils import checkpoint_util
from fast_seg.utils import cli
from fast_seg.utils import config_util
from fast_seg.utils import keras_h5
from third_party import tf1_fast_semantic_segmentation as tf1_fss

PREFIX = "model"
# How many names an error lists of each kind before "... and N more".
_SHOWN = 8

# What importing from one project needs: `adapt` sets the config fields that
# make our graph compute theirs and returns the name map (third_party/) of
# that model: (our layer name, weight kind) -> the file's variable name;
# `is_training_state` tells which file variables are not model weights.
Source = collections.namedtuple(
    "Source", ["description", "adapt", "is_training_state"])

_TF1 = "--from tf1_fast_semantic_segmentation"


def _tf1_trunk(extractor, model_name):
  """The TF1 project's dilated ResNet50: slim padding, rates 4 and 16."""
  if extractor.type != "resnet_v1_50":
    raise ValueError(
        f"{_TF1} imports its {model_name} on dilated_resnet50 (type "
        f"resnet_v1_50); '{extractor.type}' is not mapped: its "
        "dilated_mobilenet trunk is split after expanded_conv_3, ends at "
        "expanded_conv_15 and keeps Conv and expanded_conv at full width, "
        "unlike fast_seg's mobilenet_v2 (docs/migrating.md)")
  extractor.slim_explicit_padding = True
  del extractor.stage_dilation_multipliers[:]
  for stage, multiplier in (("block3", 2), ("block4", 4)):
    extractor.stage_dilation_multipliers.add(stage=stage,
                                             multiplier=multiplier)
  extractor.ClearField("weights_path")


def _adapt_tf1(model_config):
  """Sets the fields that reproduce the TF1 project's graph; its name map.

  Raises:
    ValueError: a model the TF1 maps do not cover, named.
  """
  which = model_config.WhichOneof("model")
  if which not in ("icnet", "pspnet"):
    raise ValueError(f"{_TF1} imports ICNet and PSPNet; the config's model "
                     f"is '{which}'")
  arch = getattr(model_config, which)
  _tf1_trunk(arch.feature_extractor, which)
  arch.interpolation = model_pb2.ICNet.TF1_ALIGN_CORNERS
  arch.head_activation = model_pb2.ICNet.RELU6
  if which == "icnet":
    return tf1_fss.icnet
  arch.bin_conv_depth = 512
  arch.aux_stage = "block2"
  return tf1_fss.pspnet(tuple(arch.pyramid_bins) or
                        pspnet.DEFAULT_PYRAMID_BINS)


SOURCES = {
    "tf1_fast_semantic_segmentation": Source(
        "a model.ckpt-N of the TF1 fast-semantic-segmentation project",
        _adapt_tf1, tf1_fss.is_training_state),
}

FLAGS = flags.FLAGS


def _define_flags():
  cli.define_config_flags()
  flags.DEFINE_enum("from", None, sorted(SOURCES), "The project that "
                    "trained the model.")
  flags.DEFINE_string("input", None, "Its checkpoint (prefix, or a "
                      "directory: its latest).")
  flags.DEFINE_string("output_dir", None, "Folder for model.* and "
                      "pipeline.config.")
  flags.mark_flags_as_required(["from", "input", "output_dir"])


def _weight_kind(weight):
  """'icnet_psp_conv_bn/moving_mean:0' -> 'moving_mean'."""
  return weight.name.split("/")[-1].split(":")[0]


def _listing(label, names):
  shown = ", ".join(names[:_SHOWN])
  more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
  return f"{label} ({len(names)}): {shown}{more}"


class _Plan:
  """Which file variable fills which weight, and what does not fit."""

  def __init__(self, name_map, is_training_state, model, shapes):
    self.assignments, self.missing, self.mismatched = [], [], []
    used = set()
    for layer in model.keras_model.layers:
      for weight in layer.weights:
        self._plan_weight(name_map, layer.name, weight, shapes, used)
    self.unmapped = sorted(name for name in shapes if name not in used
                           and not is_training_state(name))

  def _plan_weight(self, name_map, layer_name, weight, shapes, used):
    kind = _weight_kind(weight)
    try:
      name = name_map(layer_name, kind)
    except KeyError:
      self.missing.append(f"{layer_name}/{kind} (no name)")
      return
    if name not in shapes:
      if kind in ("gamma", "beta"):
        # slim's batch_norm without scale (center) stores no gamma (beta).
        self.assignments.append((weight, None, kind))
        return
      self.missing.append(name)
      return
    used.add(name)
    model_shape = tuple(weight.shape.as_list())
    if tuple(shapes[name]) != model_shape:
      self.mismatched.append(
          f"{name} {tuple(shapes[name])} vs {model_shape} in the model")
      return
    self.assignments.append((weight, name, kind))

  def error(self, path):
    """One line naming what does not fit, or None."""
    parts = []
    if self.mismatched:
      parts.append(_listing(
          "other shapes (filter_scale or num_classes differ?)",
          self.mismatched))
    if self.unmapped:
      parts.append(_listing("unmapped, in the checkpoint only", self.unmapped))
    if self.missing:
      parts.append(_listing("missing, the model needs them", self.missing))
    if not parts:
      return None
    return f"{path} does not fit the config's model: " + "; ".join(parts)


def plan(source_name, pipeline_config, shapes, path):
  """Adapts the config, builds the model and maps the file's variables.

  Args:
    source_name: a key of SOURCES.
    pipeline_config: the fast_seg pipeline config (its source fields set).
    shapes: {variable name: shape} of the file.
    path: the file, for the message.

  Returns:
    (model, assignments): the built SegmentationModel and (weight, file
    variable or None for an absent gamma / beta, kind) for every weight.

  Raises:
    ValueError: an unknown source, a model its maps do not cover, or
      variables that do not all map (one line naming them).
  """
  if source_name not in SOURCES:
    raise ValueError(f"--from: unknown project '{source_name}'; allowed: "
                     f"{', '.join(sorted(SOURCES))}")
  source = SOURCES[source_name]
  name_map = source.adapt(pipeline_config.model)
  model = model_builder.build(pipeline_config.model)
  mapping = _Plan(name_map, source.is_training_state, model, shapes)
  message = mapping.error(path)
  if message:
    raise ValueError(message)
  return model, mapping.assignments


class _CheckpointWeights:
  """A TF checkpoint read like a KerasH5Weights (path, context manager)."""

  def __init__(self, checkpoint):
    self.path = checkpoint_util.resolve_checkpoint(checkpoint)
    self._reader = checkpoint_util.open_reader(self.path)

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    pass

  def __getattr__(self, name):
    return getattr(self._reader, name)


def open_weights(path):
  """A reader of the trained model's file: a Keras .h5 / .hdf5 file, or a
  TF checkpoint (prefix or directory)."""
  if str(path).lower().endswith((".h5", ".hdf5")):
    if not os.path.isfile(path):
      raise ValueError(f"--input: {path} does not exist")
    return keras_h5.KerasH5Weights(path)
  return _CheckpointWeights(path)


def import_checkpoint(source_name, checkpoint, pipeline_config, output_dir):
  """Writes output_dir/model.* and pipeline.config from another project's
  checkpoint.

  Args:
    source_name: a key of SOURCES.
    checkpoint: the checkpoint prefix or its directory.
    pipeline_config: the fast_seg pipeline config (changed: the source's
      graph fields are set, as written to pipeline.config).
    output_dir: where to write.

  Returns:
    dict: prefix, num_weights, step (or None), source (the checkpoint
    read) and model (the built SegmentationModel holding the weights).

  Raises:
    ValueError: an unknown source, an unreadable checkpoint, a model the map
      does not cover, or variables that do not all map (one line).
  """
  with open_weights(checkpoint) as reader:
    model, assignments = plan(source_name, pipeline_config,
                              reader.get_variable_to_shape_map(), reader.path)
    for weight, name, kind in assignments:
      if name is None:
        value = np.full(weight.shape, 1.0 if kind == "gamma" else 0.0)
      else:
        with checkpoint_util.reading(reader.path):
          value = reader.get_tensor(name)
      weight.assign(np.asarray(value, weight.dtype.as_numpy_dtype))
    step = (int(reader.get_tensor("global_step"))
            if reader.has_tensor("global_step") else None)
  layers = [layer for layer in model.keras_model.layers if layer.weights]
  prefix = os.path.join(output_dir, PREFIX)
  count = checkpoint_util.write_weights_only(layers, prefix, tf.float32,
                                             step=step)
  checkpoint_util.write_checkpoint_index(output_dir, PREFIX)
  config_util.save_pipeline_config(pipeline_config, output_dir)
  return {"prefix": prefix, "num_weights": count, "step": step,
          "source": reader.path, "model": model}


def main(argv):
  del argv
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  config = cli.load_config(FLAGS.config_path)
  result = import_checkpoint(FLAGS["from"].value, FLAGS.input, config,
                             FLAGS.output_dir)
  step = "" if result["step"] is None else f" of step {result['step']}"
  print(f"wrote {result['prefix']} ({result['num_weights']} weights{step} "
        f"from {result['source']}, {SOURCES[FLAGS['from'].value].description})"
        f" and pipeline.config, which builds that project's graph; evaluate "
        f"it with eval.py --config_path {FLAGS.output_dir}/pipeline.config "
        f"--checkpoint {result['prefix']} --eval_dir EVAL_DIR")


def command():
  """The fast-seg-import-weights command, and python -m
  fast_seg.tools.import_weights.

  The flags are defined here, not at import, so that importing the module
  (as tests do) defines no flags that clash with other tools' (--config_path,
  --output_dir).
  """
  _define_flags()
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
