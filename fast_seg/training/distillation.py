"""Knowledge distillation from a frozen teacher inside the training step.

train_config.distillation names a teacher: any fast_seg model, by its
pipeline.config (its `model` block) and a checkpoint. It is built next to
the student, restored the way export and eval restore a model (the
inference layers by name, core checkpoint_util.restore_layers) and never
trained: its layers are not trainable, its variables are not among the
optimizer's and not in the student's checkpoints, so resuming, eval and
export see a student like any other.

Each step the teacher runs in inference mode (training=False) on the same
images, preprocessed for its own feature extractor; the losses of
core/distillation_losses.py compare it with the student and are added to the
step's losses as `distillation_pixel` and `distillation_pair`.

The feature map of the pair-wise term is the one each architecture's main
classifier reads (the `features` of SegmentationModel._build_heads, e.g.
ICNet's 1/4-resolution fusion output). The model contract's predict returns
logits only, so a second Keras model over the same layers adds that tensor
as an output: the classifier layer's input in the built graph. Same layers,
same variables, one forward pass.
"""

import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import distillation_losses
from fast_seg.core import standard_fields as fields
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util

PIXEL_LOSS = "distillation_pixel"
PAIR_LOSS = "distillation_pair"
# Key of the classifier's input features in the models built here.
FEATURES = "distillation_features"
FIELD = "train_config.distillation"


def check_config(train_config):
  """Refuses distillation values the step cannot use, naming the field."""
  config = train_config.distillation
  for name in ("teacher_config", "teacher_checkpoint"):
    if not getattr(config, name):
      raise ValueError(f"{FIELD}.{name} is not set")
  if not config.temperature > 0:
    raise ValueError(f"{FIELD}.temperature must be > 0, got {config.temperature}")
  for name in ("pixel_weight", "pair_weight"):
    if not getattr(config, name) >= 0:
      raise ValueError(f"{FIELD}.{name} must be >= 0 (0: not computed), got "
                       f"{getattr(config, name)}")
  if config.pair_grid_size < 1:
    raise ValueError(f"{FIELD}.pair_grid_size must be >= 1, got "
                     f"{config.pair_grid_size}")
  if config.pair_weight and train_config.memory_saving:
    # The pair term reads the features through a second Keras model, which
    # the recomputation plan of memory_saving does not wrap.
    raise ValueError(f"{FIELD}.pair_weight cannot be combined with "
                     "train_config.memory_saving; set one of them to 0 / false")


def load_teacher_model_config(path, student_model_config):
  """The `model` block of the teacher's pipeline.config, checked.

  Raises:
    ValueError: naming train_config.distillation.teacher_config, when the
      file cannot be read or its model has other outputs than the student's
      (num_classes, binary_output and its foreground classes).
  """
  try:
    teacher = config_util.load_pipeline_config(path).model
    teacher_arch = config_util.get_model_config(teacher)
  except ValueError as e:
    raise ValueError(f"{FIELD}.teacher_config: {e}") from None
  student_arch = config_util.get_model_config(student_model_config)
  if teacher_arch.num_classes != student_arch.num_classes:
    raise ValueError(
        f"{FIELD}.teacher_config: the teacher ({path}) has num_classes "
        f"{teacher_arch.num_classes}, the student {student_arch.num_classes}; "
        "distillation needs the same classes")
  binary = [a.HasField("binary_output") for a in (teacher_arch, student_arch)]
  if binary[0] != binary[1] or (binary[0] and list(
      teacher_arch.binary_output.foreground_class_ids) != list(
          student_arch.binary_output.foreground_class_ids)):
    raise ValueError(
        f"{FIELD}.teacher_config: the teacher ({path}) and the student must "
        "both be binary with the same foreground_class_ids, or both "
        "multi-class (model.<architecture>.binary_output)")
  return teacher


def classifier_features(model, keras_model):
  """The main classifier's input in `keras_model`: the pair term's features.

  Every architecture's main logits are `classifier(features)`, cast to
  float32 by one more layer; both are walked back in the built graph.

  Args:
    model: the SegmentationModel (its classifier_layer_names).
    keras_model: its training or inference Keras model (maybe tfmot-wrapped).
  """
  logits = keras_model.output
  if isinstance(logits, dict):
    logits = logits[fields.PredictionFields.logits]
  # pylint: disable=protected-access
  cast = logits._keras_history.layer
  classifier = cast.input._keras_history.layer
  # pylint: enable=protected-access
  # tfmot wrappers keep the wrapped layer, and its name, as `.layer`.
  if getattr(classifier, "layer", classifier).name not in (
      model.classifier_layer_names):
    raise NotImplementedError(
        f"{keras_model.name}: the main logits do not come from a classifier "
        f"layer (got {classifier.name}); no features for {FIELD}.pair_weight")
  return classifier.input


def with_features(model, keras_model):
  """A Keras model over the same layers that also outputs the features.

  Its outputs: keras_model's (a dict by head, or the main logits under
  PredictionFields.logits) plus FEATURES.
  """
  outputs = keras_model.output
  if not isinstance(outputs, dict):
    outputs = {fields.PredictionFields.logits: outputs}
  features = classifier_features(model, keras_model)
  return keras.Model(keras_model.inputs, {**outputs, FEATURES: features},
                     name=f"{keras_model.name}_with_features")


class Distillation:
  """The teacher of one training run and the losses it adds to the step.

  Built by the Trainer under its strategy scope and precision policy, after
  the student; `student_predict` replaces the student's predict call in the
  step when the pair term needs its features, and `losses` gives the
  weighted terms (an empty dict when both weights are 0).
  """

  def __init__(self, train_config, student_model_config, model, train_model):
    check_config(train_config)
    config = train_config.distillation
    self.config = config
    self.binary = model.is_binary
    teacher_config = load_teacher_model_config(config.teacher_config,
                                               student_model_config)
    try:
      self.teacher = model_builder.build(teacher_config)
    except ValueError as e:
      raise ValueError(f"{FIELD}.teacher_config: {config.teacher_config}: "
                       f"{e}") from None
    self.teacher.keras_model.trainable = False
    self.teacher_checkpoint = self._restore_teacher()
    self._teacher = (with_features(self.teacher, self.teacher.inference_model)
                     if config.pair_weight else None)
    self._student = (with_features(train_model, train_model.keras_model)
                     if config.pair_weight else None)
    self._train_model = train_model

  def _restore_teacher(self):
    """Its inference layers by name, as export and eval restore a model.

    A pruned teacher's zeros come along; tfmot wrappers are left out.
    """
    try:
      path = checkpoint_util.resolve_checkpoint(self.config.teacher_checkpoint)
      checkpoint_util.restore_layers(
          [l for l in self.teacher.inference_model.layers if l.weights], path)
    except ValueError as e:
      raise ValueError(f"{FIELD}.teacher_checkpoint: {e}") from None
    return path

  @property
  def teacher_variables(self):
    """The teacher's weights (none of them trained)."""
    return self.teacher.inference_model.weights

  def student_predict(self, preprocessed_images):
    """(the student's predict(training=True) dict, its features or None)."""
    if self._student is None:
      return self._train_model.predict(preprocessed_images, training=True), None
    outputs = dict(self._student(preprocessed_images, training=True))
    return outputs, outputs.pop(FEATURES)

  def losses(self, images, predictions, student_features):
    """{name: weighted loss} of the non-zero terms, float32 scalars.

    Args:
      images: the raw batch (0..255); the teacher preprocesses it for its
        own feature extractor.
      predictions: the student's predictions (its main logits are used).
      student_features: from student_predict; needed for the pair term.
    """
    config = self.config
    if not (config.pixel_weight or config.pair_weight):
      return {}
    inputs = self.teacher.preprocess(images)
    if self._teacher is not None:
      teacher = self._teacher(inputs, training=False)
    else:
      teacher = self.teacher.predict(inputs, training=False)
    logits = fields.PredictionFields.logits
    result = {}
    if config.pixel_weight:
      student_logits = predictions[logits]
      teacher_logits = distillation_losses.match_size(
          teacher[logits], tf.shape(student_logits)[1:3])
      result[PIXEL_LOSS] = config.pixel_weight * distillation_losses.pixel_kl(
          student_logits, teacher_logits, config.temperature, self.binary)
    if config.pair_weight:
      result[PAIR_LOSS] = config.pair_weight * distillation_losses.pair_affinity(
          student_features, teacher[FEATURES], config.pair_grid_size)
    return result


def build(train_config, student_model_config, model, train_model):
  """A Distillation when train_config.distillation is set, else None."""
  if not train_config.HasField("distillation"):
    return None
  return Distillation(train_config, student_model_config, model, train_model)
