"""Builds a SegmentationModel from a `Model` proto (dispatch on its oneof).

Each field of the `model` oneof names a registered meta-architecture
(core.model.register, next to the class), so a new architecture is its
module plus its message: nothing here to edit. The fields that every
architecture message shares are read here, once; the class's
`kwargs_from_config` reads the rest of its message.
"""

# Imported for its side effect: it registers every architecture.
from fast_seg import meta_architectures  # pylint: disable=unused-import
from fast_seg.builders import feature_extractor_builder
from fast_seg.builders import hyperparams_builder
from fast_seg.builders import losses_builder
from fast_seg.core import model as model_lib
from fast_seg.core import standard_fields as fields
from fast_seg.protos import model_pb2
from fast_seg.utils import config_util


def build_binary_output(arch, path):
  """The model's BinaryOutput, or None when `binary_output` is not set.

  Raises:
    ValueError: a foreground id out of range or a threshold outside (0, 1).
  """
  if not arch.HasField("binary_output"):
    return None
  config = arch.binary_output
  field = f"{path}.binary_output"
  ids = tuple(config.foreground_class_ids)
  bad = [i for i in ids if not 0 <= i < arch.num_classes]
  if bad:
    raise ValueError(f"{field}.foreground_class_ids {bad} are not class ids "
                     f"(0..{arch.num_classes - 1})")
  if not 0.0 < config.threshold < 1.0:
    raise ValueError(
        f"{field}.threshold must be in (0, 1), got {config.threshold}")
  return model_lib.BinaryOutput(ids, round(config.threshold, 6))


def _check_required_fields(arch, path):
  """num_classes (>= 2) and feature_extractor are set; ignore_label is no
  class.

  One class is refused: a softmax over one class predicts class 0 at every
  pixel whatever its weights, so such a model trains, evaluates and exports
  without error and is useless. One foreground class is two classes.
  """
  if not arch.HasField("num_classes") or arch.num_classes < 1:
    raise ValueError(f"{path}.num_classes must be set to a value >= 2")
  if arch.num_classes < 2:
    raise ValueError(
        f"{path}.num_classes is {arch.num_classes}, but a model needs >= 2 "
        "classes (a softmax over one class can only predict it); for one "
        "class against the rest set num_classes: 2 (background and the "
        f"class), and {path}.binary_output {{}} for one sigmoid channel")
  if 0 <= arch.ignore_label < arch.num_classes:
    raise ValueError(
        f"{path}.ignore_label ({arch.ignore_label}) is a class id "
        f"(num_classes is {arch.num_classes}); use a value outside "
        f"0..{arch.num_classes - 1}")
  if not arch.HasField("feature_extractor"):
    raise ValueError(f"{path}.feature_extractor is not set")


def _shared_arguments(arch, path, default_aux_weights):
  """The constructor arguments that come from the six shared fields.

  num_classes, ignore_label, feature_extractor, hyperparams, loss and
  binary_output are repeated in every architecture message instead of
  sitting once beside the `model` oneof. They stay there: moving them would
  change the text format of every config, and of every pipeline.config
  saved with a checkpoint (the model zoo's included), which must keep
  loading. This accessor is where they are read and built, once for all
  architectures.

  Args:
    arch: the architecture message (ICNet, PSPNet, ...), checked by
      _check_required_fields.
    path: its place in the pipeline, e.g. 'model.icnet'.
    default_aux_weights: the class's auxiliary heads, for the loss.

  Returns:
    dict of the keyword arguments every SegmentationModel takes.
  """
  binary_output = build_binary_output(arch, path)
  conv_hyperparams = hyperparams_builder.build(arch.hyperparams,
                                              f"{path}.hyperparams")
  extractor = feature_extractor_builder.build(
      arch.feature_extractor, conv_hyperparams, f"{path}.feature_extractor")
  loss = losses_builder.build(
      arch.loss, arch.num_classes, arch.ignore_label,
      fields.PredictionFields.logits, default_aux_weights, f"{path}.loss",
      binary_output=binary_output)
  return {"num_classes": arch.num_classes, "ignore_label": arch.ignore_label,
          "feature_extractor": extractor, "conv_hyperparams": conv_hyperparams,
          "loss": loss, "binary_output": binary_output}


def build(config):
  """Builds the model named by the `model` oneof.

  Args:
    config: model_pb2.Model.

  Returns:
    A fast_seg.core.model.SegmentationModel with its Keras models built.

  Raises:
    ValueError: empty oneof or a bad value, naming the field.
  """
  config_util.check_type(config, model_pb2.Model, "model")
  which = config_util.require_oneof(config, "model", "model")
  model_class = model_lib.get(which)
  arch = getattr(config, which)
  path = f"model.{which}"
  _check_required_fields(arch, path)
  own_arguments = model_class.kwargs_from_config(arch, path)
  shared_arguments = _shared_arguments(arch, path,
                                       model_class.default_aux_weights)
  return model_class(**shared_arguments, **own_arguments)
