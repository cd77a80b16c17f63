"""Registry, width rule and the base class shared by all backbones.

A feature extractor is a backbone split into named stages. Meta-architectures
build the stages they need with the Keras functional API, possibly in several
calls on different inputs (ICNet runs the early stages on one resolution and
the late stages on another), and read back the endpoints by stage name.

A backbone is one module: its class, decorated with `@register(name, ...)`
which also names the ImageNet weight files it reads (third_party/ holds
those files' name maps). Nothing central lists backbones; the package
imports every module in it, and a class defined elsewhere (a test's toy
backbone) registers the same way once its module is imported.
"""

import abc
import collections
import enum

import tensorflow as tf

from fast_seg.core import layers as core_layers
from fast_seg.core import registry
from fast_seg.protos import feature_extractor_pb2

WeightsFormat = feature_extractor_pb2.FeatureExtractor.WeightsFormat

_REGISTRY = registry.Registry("feature_extractor.type")

# The width group of every conv a meta-architecture adds on the trunk.
HEAD_GROUP = "head"

StageIO = collections.namedtuple(
    "StageIO", ["name", "input", "output", "layer_names"])
StageIO.__doc__ = """One built stage: its input and output tensors and the names
of the layers it created, so a model can run (or recompute) it as a unit."""


def register(name, imagenet_name_maps=None):
  """Class decorator that makes a FeatureExtractor buildable by `name`.

  Args:
    name: the `feature_extractor.type` string of the config.
    imagenet_name_maps: {WeightsFormat: name map} of the ImageNet weight
      files the backbone loads (pretrained.load_imagenet_weights); a name
      map is a function (Keras layer name, weight kind) -> the file's name
      for that weight, raising KeyError for a layer it does not know (see
      third_party/). None: the backbone loads no ImageNet weights.

  Returns:
    The decorator; it sets `cls.name` and `cls.imagenet_name_maps` and
    returns the class unchanged.

  Raises:
    ValueError: `name` is already registered by another class.
  """
  def decorator(cls):
    _REGISTRY.add(name, cls)
    cls.name = name
    cls.imagenet_name_maps = dict(imagenet_name_maps or {})
    return cls
  return decorator


def unregister(name):
  """Undoes register(name), e.g. after a test's toy backbone."""
  _REGISTRY.remove(name)


def get(name):
  """Returns the FeatureExtractor class registered under `name`.

  Args:
    name: a `feature_extractor.type` value, e.g. 'resnet_v1_50'.

  Returns:
    The registered class.

  Raises:
    ValueError: nothing is registered under `name`; the message lists the
      allowed names.
  """
  return _REGISTRY.get(name)


def registered_names():
  """Sorted names of all registered feature extractors."""
  return _REGISTRY.names()


class Rounding(enum.Enum):
  """The two rules by which `FeatureExtractor.width` applies filter_scale.

  (Or, for a width group listed in group_widths, that group's own scale:
  the rule stays the same, only the multiplier changes.)

  Each architecture keeps the rule its checkpoints were trained with, so
  widths and parameter counts never change:

  BACKBONE: the backbone's own rule, the one its trunk convs use (slim's
    depth-multiplier rules): plain rounding for ResNet, truncation to at
    least 8 for MobileNetV1, multiples of 8 for MobileNetV2. ICNet, PSPNet
    and DilatedFCN size their heads by it, so a head shrinks like its trunk.
  PLAIN: max(1, round(nominal * filter_scale)) on every backbone.
    DeepLabV3+ and MobileUNet size their heads by it, so 0.5 halves every
    head width, as filter pruning keeps round(scale * filters) filters.
  """
  BACKBONE = "backbone"
  PLAIN = "plain"


def make_divisible(value, divisor=8, min_value=None):
  """Rounds a width to a multiple of `divisor` the way slim's MobileNets do.

  The result is the nearest multiple of `divisor` (halves round up), at least
  `min_value` (default `divisor`), and never more than 10% below `value`:
  channel counts that are multiples of 8 run faster on phones.

  Args:
    value: the unrounded width, e.g. depth * depth_multiplier.
    divisor: the multiple to round to.
    min_value: the smallest width allowed; defaults to `divisor`.

  Returns:
    int, the rounded width.
  """
  if min_value is None:
    min_value = divisor
  rounded = (int(value + divisor / 2) // divisor) * divisor
  rounded = max(min_value, rounded)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def to_unit_range(images):
  """Float RGB images in [0, 255] (any dtype) to float32 [-1, 1]: the input
  of the MobileNets (slim's) and of the trunks trained from scratch here."""
  return tf.cast(images, tf.float32) / 127.5 - 1.0


class StrideTracker:
  """Turns nominal strides into (stride, dilation) pairs for an output stride.

  tf-slim's rule: follow the stride of the output relative to the image; once
  it reaches `output_stride`, each later stride becomes 1 and multiplies the
  dilation rate instead. The layer whose stride is dropped still uses the
  current rate; the rate grows only after it.
  """

  def __init__(self, output_stride):
    self._output_stride = output_stride
    self.current_stride = 1
    self._rate = 1

  def step(self, stride):
    """Returns (layer_stride, layer_rate) for a layer of nominal `stride`."""
    if self.current_stride == self._output_stride:
      rate = self._rate
      self._rate *= stride
      return 1, rate
    self.current_stride *= stride
    return stride, 1


class FeatureExtractor(abc.ABC):
  """A backbone made of named stages that can be built piece by piece.

  Subclasses set `stage_names` and `allowed_output_strides`, compute their
  per-layer (stride, rate) schedule in `__init__` from the nominal stage
  strides, and implement `_build_stage` and `preprocess`. Every layer is made
  by the ConvHyperparams factories and recorded with `_track`, so restore,
  freezing and pruning can find all of them through `layers`.
  """

  name = None  # Set by @register.
  imagenet_name_maps = {}  # Set by @register.
  stage_names = ()
  allowed_output_strides = (8, 16, 32)

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None):
    """Stores the settings; no layer is created before `build`.

    Args:
      conv_hyperparams: a hyperparams_builder.ConvHyperparams; every conv and
        batch norm comes from its factories.
      filter_scale: width multiplier of every prunable conv (1.0 full model).
      output_stride: stride of the last stage relative to the image; later
        strides become dilations.
      group_scales: (group, scale) pairs (or a dict) from the config's
        `group_widths`: those width groups (`group_names`) use their own
        scale instead of filter_scale. None or empty: uniform filter_scale.

    Raises:
      ValueError: filter_scale or a group's scale is outside (0, 1], a group
        is unknown (the message lists `group_names`) or repeated, or
        output_stride is not one of `allowed_output_strides`. The message
        names the field relative to the FeatureExtractor message
        ('feature_extractor.filter_scale'); the builder puts it at its place
        in the pipeline. This is the one place these values are checked.
    """
    if not 0.0 < filter_scale <= 1.0:
      raise ValueError("feature_extractor.filter_scale must be in (0, 1], "
                       f"got {filter_scale}")
    if output_stride not in self.allowed_output_strides:
      allowed = ", ".join(str(s) for s in self.allowed_output_strides)
      raise ValueError(
          f"feature_extractor.output_stride: {output_stride} is not supported "
          f"by {self.name}; allowed: {allowed}")
    self._hyperparams = conv_hyperparams
    self._filter_scale = float(filter_scale)
    self._group_scales = self._checked_group_scales(group_scales)
    self._output_stride = int(output_stride)
    self._building_stage = None
    self._layers = []
    self._built_stages = set()
    # StageIO of every built stage, in build order (memory saving reads it).
    self.stage_io = []
    # set_input_normalization's (mean, std) of preprocessing, both float32
    # per channel, and the channel scales the network applies (or None).
    self._input_normalization = None
    self._channel_scales = None

  @property
  def conv_hyperparams(self):
    return self._hyperparams

  @property
  def filter_scale(self):
    return self._filter_scale

  @property
  def group_names(self):
    """The width groups a config may list: the trunk stages, then 'head'."""
    return tuple(self.stage_names) + (HEAD_GROUP,)

  def group_scale(self, group):
    """Width multiplier of width group `group`: its own, else filter_scale."""
    return self._group_scales.get(group, self._filter_scale)

  @property
  def group_scales(self):
    """{group: scale} of every width group, listed or not (for reports)."""
    return {group: self.group_scale(group) for group in self.group_names}

  def _checked_group_scales(self, group_scales):
    """group_scales as a dict, refused (naming the field) when invalid."""
    pairs = list((group_scales or {}).items()
                 if isinstance(group_scales, dict) else group_scales or ())
    checked = {}
    for group, scale in pairs:
      field = f"feature_extractor.group_widths['{group}']"
      if group not in self.group_names:
        raise ValueError(
            f"{field}: unknown group '{group}' of {self.name}; allowed: "
            f"{', '.join(self.group_names)}")
      if group in checked:
        raise ValueError(f"{field} is given twice")
      if not 0.0 < scale <= 1.0:
        raise ValueError(f"{field}.scale must be in (0, 1], got {scale}")
      checked[group] = float(scale)
    return checked

  def _enters_new_width(self, stage_name):
    """True if `stage_name`'s input comes from a stage of another scale.

    Its first unit must then keep the full model's topology (a projection
    shortcut, no residual add) even where the two widths happen to be
    equal, so a checkpoint pruned to these widths keeps every layer.
    """
    index = self.stage_names.index(stage_name)
    return index > 0 and (self.group_scale(self.stage_names[index - 1])
                          != self.group_scale(stage_name))

  @property
  def output_stride(self):
    return self._output_stride

  @property
  def layers(self):
    """Every Keras layer this extractor created, in creation order."""
    return list(self._layers)

  @property
  def stage_strides(self):
    """Dict stage name -> stride of its output relative to the image.

    Subclasses fill `self._stage_strides` in `__init__` from their schedule.
    """
    return dict(self._stage_strides)

  def width(self, nominal, rounding=Rounding.BACKBONE, group=None):
    """Width of a conv of nominal width `nominal` in this model.

    The one place a width is scaled, for the trunk and for every head;
    `rounding` names which of the two rules applies and `group` whose
    scale (group_widths, else filter_scale).

    Args:
      nominal: the width at filter_scale 1.0 (may be fractional, e.g. after
        another multiplier).
      rounding: a Rounding; the trunk uses BACKBONE.
      group: a width group; None: the stage being built (so a backbone's
        convs follow their stage without saying so), else 'head' (the
        meta-architecture's convs, built outside `build`).

    Returns:
      int, at least 1.
    """
    if group is None:
      group = self._building_stage or HEAD_GROUP
    scale = self.group_scale(group)
    if rounding is Rounding.PLAIN:
      return max(1, int(round(nominal * scale)))
    return self._backbone_width(nominal, scale)

  def _backbone_width(self, nominal, scale):
    """Rounding.BACKBONE: plain rounding unless the backbone has its own."""
    return max(1, int(round(nominal * scale)))

  @abc.abstractmethod
  def preprocess(self, images):
    """Maps float32 RGB images in [0, 255] to what the backbone expects."""

  def set_input_normalization(self, mean, std):
    """Feeds (pixel - mean) / std instead of `preprocess`'s output.

    For weights another project trained on its own normalization (the
    config's input_mean / input_std); the trunk's layers do not change.

    Stds that differ by channel are split: preprocessing divides by their
    mean (one scale, as a Core ML image input needs) and the network's
    first layer (`scale_input_channels`) multiplies channel c by
    mean / std[c].

    Args:
      mean, std: one value for all channels, or one per RGB channel.

    Raises:
      ValueError: not 1 or 3 values each, or a std <= 0.
    """
    for field, values in (("input_mean", mean), ("input_std", std)):
      if len(values) not in (1, 3):
        raise ValueError(f"feature_extractor.{field} needs 1 value or 3 (R, "
                         f"G, B), got {len(values)}")
    if min(std) <= 0.0:
      raise ValueError(f"feature_extractor.input_std must be > 0, got "
                       f"{list(std)}")
    scale = sum(std) / len(std)
    self._input_normalization = (
        tf.constant(list(mean) * (3 // len(mean)), tf.float32),
        tf.constant(scale, tf.float32))
    if len(set(std)) > 1:
      self._channel_scales = [scale / s for s in std]

  def scale_input_channels(self, images):
    """The network's first layer on preprocessed `images`: the per-channel
    part of the input normalization if it has one, else `images`."""
    if self._channel_scales is None:
      return images
    return core_layers.ChannelScale(
        self._channel_scales, name=f"{self.name}_input_channel_scale")(images)

  def normalize_input(self, images):
    """RGB images in [0, 255] -> the network's input: (pixel - mean) / the
    stds' mean if an input normalization is set (scale_input_channels does
    the rest), else the trunk's own `preprocess`."""
    if self._input_normalization is None:
      return self.preprocess(images)
    mean, std = self._input_normalization
    return (tf.cast(images, tf.float32) - mean) / std

  @abc.abstractmethod
  def _build_stage(self, stage_name, net):
    """Creates one stage's layers, applies them to `net`, returns output."""

  def _track(self, layer):
    """Records a newly created layer and returns it."""
    self._layers.append(layer)
    return layer

  def _stage_index(self, stage_name, default, arg_name):
    if stage_name is None:
      return default
    if stage_name not in self.stage_names:
      raise ValueError(
          f"{arg_name}: unknown stage '{stage_name}' of {self.name}; "
          f"allowed: {', '.join(self.stage_names)}")
    return self.stage_names.index(stage_name)

  def build(self, inputs, first_stage=None, last_stage=None):
    """Applies stages `first_stage`..`last_stage` (inclusive) to `inputs`.

    Args:
      inputs: a 4-D KerasTensor (or tensor) fed to `first_stage`: the
        preprocessed image for the first stage, or an earlier stage's output
        (possibly resized) otherwise. Strides and dilations do not depend on
        it: they follow the nominal schedule of a full build.
      first_stage: name of the first stage to build; None for the first.
      last_stage: name of the last stage to build; None for the last.

    Returns:
      Dict stage name -> output tensor, for the stages built in this call.

    Raises:
      ValueError: a stage name is unknown, first_stage comes after
        last_stage, or a stage was already built (its layers exist once).
    """
    first = self._stage_index(first_stage, 0, "first_stage")
    last = self._stage_index(
        last_stage, len(self.stage_names) - 1, "last_stage")
    if first > last:
      raise ValueError(
          f"first_stage '{self.stage_names[first]}' comes after last_stage "
          f"'{self.stage_names[last]}' in {self.name}")
    stages = self.stage_names[first:last + 1]
    for stage in stages:
      if stage in self._built_stages:
        raise ValueError(
            f"{self.name} stage '{stage}' is already built; each stage's "
            "layers are created once (make a second extractor to build "
            "another copy)")
    endpoints = {}
    net = inputs
    for stage in stages:
      stage_input, first_layer = net, len(self._layers)
      self._building_stage = stage
      try:
        net = self._build_stage(stage, net)
      finally:
        self._building_stage = None
      self._built_stages.add(stage)
      self.stage_io.append(StageIO(
          stage, stage_input, net,
          tuple(layer.name for layer in self._layers[first_layer:])))
      endpoints[stage] = net
    return endpoints

  def build_pyramid(self, inputs):
    """Builds every stage and returns the feature pyramid of FPN-like heads.

    By default a level is the output of the last stage of its stride; a
    backbone whose customary FPN taps are elsewhere (mobilenet_v2's
    expansion outputs) overrides this.

    Args:
      inputs: the preprocessed image (KerasTensor).

    Returns:
      dict stride -> feature map, for every stride a stage ends at.
    """
    endpoints = self.build(inputs)
    return {self.stage_strides[stage]: endpoints[stage]
            for stage in self.stage_names}
