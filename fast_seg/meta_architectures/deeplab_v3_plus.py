"""DeepLabV3+ (Chen et al., "Encoder-Decoder with Atrous Separable Convolution
for Semantic Image Segmentation", 2018).

  I ─ trunk (output stride 8 or 16) ─ encoder head ─ dropout ─┐
       └─ stride-4 stage ─ 1x1 (low_level_depth) ─────────────┴ concat
          ─ two 3x3 separable convs (decoder_depth) ─ classifier (1/4)

The encoder head is ASPP (a 1x1 conv, one 3x3 atrous conv per rate and
image-level pooling, concatenated and projected) or a dense prediction cell
(Chen et al. 2018, "Searching for Efficient Multi-Scale Architectures for
Dense Image Prediction"): a list of separable convs, each reading the trunk
output or an earlier op's output. decoder_depth 0 drops the decoder (plain
DeepLabV3: the classifier reads the encoder output).

The fields encoder_stage, classifier_kernel_size / classifier_bias and the
cell's op_form / projection_depth default to the graph above; the Keras
DeepLabV3+ project's graph (tools/import_weights) sets them otherwise.

Every head width is scaled by the extractor's filter_scale, so a model
pruned by compress.py loads into the same config built at the smaller scale.
"""

import collections

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks
from fast_seg.protos import model_pb2

# The published Cityscapes cell, DeepLab's
# core/dense_prediction_cell_branch5_top1_cityscapes.json:
# (kernel size, (rate height, rate width), input index; -1 = trunk output).
# DeepLab searched it at output stride 16 (and multiplies the rates by
# 16 // output_stride); fast_seg uses the rates as given.
DEFAULT_CELL_OPS = (
    (3, (1, 6), -1),
    (3, (18, 15), 0),
    (3, (6, 3), 1),
    (3, (1, 1), 0),
    (3, (6, 21), 0),
)

# Where the graph departs from DeepLab's (the Keras DeepLabV3+ project's):
# encoder_stage, the trunk stage the encoder reads (None: the last; the trunk
# is built up to it); the classifier's kernel size and bias; the form of the
# cell's 3x3 ops (a DensePredictionCell.OpForm name); the nominal width of
# the cell's projection (None: encoder_depth).
HeadLayout = collections.namedtuple(
    "HeadLayout", ["encoder_stage", "classifier_kernel_size",
                   "classifier_bias", "cell_op_form", "projection_depth"],
    defaults=[None, 1, True, "DEPTHWISE_BN_POINTWISE", None])

# The low-level feature of the decoder comes from the trunk stage at this
# stride of the image.
LOW_LEVEL_STRIDE = 4

_PREFIX = "deeplab"


def default_atrous_rates(output_stride):
  """ASPP rates of the paper: 6, 12, 18 at output stride 16, doubled at 8.

  Args:
    output_stride: 8 or 16.

  Returns:
    List of three atrous rates.
  """
  return [rate * 16 // output_stride for rate in (6, 12, 18)]


def _cell_op(op, op_path, index):
  """(kernel, (rate_h, rate_w), input_index) of one DensePredictionCell op."""
  if op.kernel_size not in (1, 3):
    raise ValueError(f"{op_path}.kernel_size must be 1 or 3, got "
                     f"{op.kernel_size}")
  rate = list(op.rate) or [1]
  if len(rate) == 1:
    rate = rate * 2
  if len(rate) != 2 or min(rate) < 1:
    raise ValueError(f"{op_path}.rate must be one or two values >= 1 "
                     f"(height, width), got {list(op.rate)}")
  if not -1 <= op.input_index < index:
    raise ValueError(
        f"{op_path}.input_index must be -1 (the trunk output) or the "
        f"index of an earlier op (0..{index - 1}), got {op.input_index}")
  return (op.kernel_size, tuple(rate), op.input_index)


def _dense_prediction_cell_kwargs(cell, cell_path, output_stride):
  """Constructor arguments of a DensePredictionCell encoder head."""
  ops = [_cell_op(op, f"{cell_path}.ops[{i}]", i)
         for i, op in enumerate(cell.ops)]
  if not ops:
    # The published cell was searched at output stride 16; DeepLab doubles
    # its rates at output stride 8, as it does ASPP's.
    factor = 16 // output_stride
    ops = [(kernel, (rate[0] * factor, rate[1] * factor), index)
           for kernel, rate, index in DEFAULT_CELL_OPS]
  return {"encoder": "dense_prediction_cell", "cell_ops": ops,
          "encoder_depth": config_checks.positive(cell.depth,
                                                  f"{cell_path}.depth")}


def _head_layout(config, field_path):
  """The HeadLayout of a DeepLabV3Plus config, checked."""
  if config.classifier_kernel_size not in (1, 3):
    raise ValueError(f"{field_path}.classifier_kernel_size must be 1 or 3, "
                     f"got {config.classifier_kernel_size}")
  cell = config.dense_prediction_cell
  if cell.projection_depth < 0:
    raise ValueError(f"{field_path}.dense_prediction_cell.projection_depth "
                     f"must be >= 0 (0: depth), got {cell.projection_depth}")
  return HeadLayout(
      encoder_stage=config.encoder_stage or None,
      classifier_kernel_size=config.classifier_kernel_size,
      classifier_bias=config.classifier_bias,
      cell_op_form=model_pb2.DensePredictionCell.OpForm.Name(cell.op_form),
      projection_depth=cell.projection_depth or None)


def _aspp_kwargs(aspp, aspp_path, output_stride):
  """Constructor arguments of an ASPP encoder head."""
  rates = list(aspp.atrous_rates) or default_atrous_rates(output_stride)
  return {"encoder": "aspp",
          "atrous_rates": config_checks.all_at_least_one(
              rates, f"{aspp_path}.atrous_rates"),
          "encoder_depth": config_checks.positive(aspp.depth,
                                                  f"{aspp_path}.depth"),
          "image_pooling": aspp.image_pooling,
          "separable_conv": aspp.separable_conv}


def _encoder_stage(extractor, encoder_stage, low_level_stage):
  """The trunk stage the encoder head reads: `encoder_stage`, else the last;
  not before the decoder's `low_level_stage` (None: no decoder)."""
  stages = extractor.stage_names
  if not encoder_stage:
    return stages[-1]
  field = "model.deeplab_v3_plus.encoder_stage"
  if encoder_stage not in stages:
    raise ValueError(f"{field}: unknown stage '{encoder_stage}' of "
                     f"{extractor.name}; allowed: {', '.join(stages)}")
  if low_level_stage and (stages.index(low_level_stage) >
                          stages.index(encoder_stage)):
    raise ValueError(f"{field}: the decoder reads '{low_level_stage}', after "
                     f"'{encoder_stage}'; use a later stage or "
                     "decoder_depth: 0")
  return encoder_stage


def _low_level_stage(extractor, decoder_depth):
  """The decoder's stride-4 stage (the last one), None without a decoder."""
  low_level = [name for name in extractor.stage_names
               if extractor.stage_strides[name] == LOW_LEVEL_STRIDE]
  if decoder_depth > 0 and not low_level:
    raise ValueError(
        f"model.deeplab_v3_plus.feature_extractor: {extractor.name} "
        f"has no stage at stride {LOW_LEVEL_STRIDE} for the decoder")
  return low_level[-1] if low_level else None


@model.register("deeplab_v3_plus")
class DeepLabV3Plus(model.SegmentationModel):
  """DeepLabV3+ with an ASPP or dense-prediction-cell encoder head."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, binary_output=None, low_level_depth=48,
               decoder_depth=256, dropout_rate=0.1, encoder="aspp",
               encoder_depth=256, atrous_rates=None, image_pooling=True,
               separable_conv=True, cell_ops=DEFAULT_CELL_OPS,
               layout=HeadLayout()):
    """Stores the head settings; the base class then builds the models.

    Args:
      num_classes, ignore_label, feature_extractor, conv_hyperparams, loss,
        binary_output: as for every SegmentationModel.
      low_level_depth: nominal width of the stride-4 projection.
      decoder_depth: nominal width of the decoder convs; 0: no decoder.
      dropout_rate: dropout after the encoder projection (training only).
      encoder: "aspp" or "dense_prediction_cell".
      encoder_depth: nominal width of every encoder branch and projection.
      atrous_rates: ASPP rates; None: default_atrous_rates(output_stride).
      image_pooling: ASPP image-level pooling branch.
      separable_conv: ASPP atrous convs as depthwise + pointwise convs.
      cell_ops: dense prediction cell ops, (kernel_size, (rate_h, rate_w),
        input_index) each.
      layout: a HeadLayout; the default is DeepLab's graph.

    Raises:
      ValueError: an unknown encoder or encoder_stage, or the trunk has no
        stride-4 stage.
    """
    if encoder not in ("aspp", "dense_prediction_cell"):
      raise ValueError(f"model.deeplab_v3_plus: unknown encoder '{encoder}'; "
                       "allowed: aspp, dense_prediction_cell")
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="deeplab_v3_plus",
                     binary_output=binary_output)
    self.low_level_stage = _low_level_stage(feature_extractor, decoder_depth)
    self.low_level_depth = low_level_depth
    self.decoder_depth = decoder_depth
    self.dropout_rate = dropout_rate
    self.encoder = encoder
    self.encoder_depth = encoder_depth
    self.atrous_rates = tuple(
        atrous_rates if atrous_rates is not None
        else default_atrous_rates(feature_extractor.output_stride))
    self.image_pooling = image_pooling
    self.separable_conv = separable_conv
    self.cell_ops = tuple((kernel, tuple(rate), index)
                          for kernel, rate, index in cell_ops)
    self.encoder_stage = _encoder_stage(
        feature_extractor, layout.encoder_stage, self.low_level_stage)
    self.classifier_kernel_size = layout.classifier_kernel_size
    self.classifier_bias = layout.classifier_bias
    self.cell_op_form = layout.cell_op_form
    self.projection_depth = layout.projection_depth or encoder_depth

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(config, field_path, (8, 16),
                                        "DeepLabV3+")
    kwargs = {
        "low_level_depth": config_checks.positive(
            config.low_level_depth, f"{field_path}.low_level_depth"),
        "decoder_depth": config.decoder_depth,
        "dropout_rate": config.dropout_rate,
        "layout": _head_layout(config, field_path),
    }
    if config.decoder_depth < 0:
      raise ValueError(f"{field_path}.decoder_depth must be >= 0 (0: no "
                       f"decoder), got {config.decoder_depth}")
    if not 0.0 <= config.dropout_rate < 1.0:
      raise ValueError(f"{field_path}.dropout_rate must be in [0, 1), got "
                       f"{config.dropout_rate}")
    output_stride = config.feature_extractor.output_stride
    if config.WhichOneof("encoder_head") == "dense_prediction_cell":
      kwargs.update(_dense_prediction_cell_kwargs(
          config.dense_prediction_cell, f"{field_path}.dense_prediction_cell",
          output_stride))
    else:
      kwargs.update(_aspp_kwargs(config.aspp, f"{field_path}.aspp",
                                 output_stride))
    return kwargs

  def _width(self, depth):
    # Plain rounding (not MobileNet's multiples of 8), so that 0.5 halves
    # every head width as filter pruning does.
    return self.feature_extractor.width(depth, base.Rounding.PLAIN)

  def _aspp(self, x):
    depth = self._width(self.encoder_depth)
    name = f"{_PREFIX}_aspp"
    branches = [self.conv_bn(x, depth, 1, name=f"{name}_conv1x1")]
    for i, rate in enumerate(self.atrous_rates):
      branch = f"{name}_atrous{i}"
      if self.separable_conv:
        branches.append(self.separable_conv_bn(x, depth, branch, rate))
      else:
        branches.append(self.conv_bn(x, depth, 3, name=branch,
                                     dilation_rate=rate))
    if self.image_pooling:
      pooled = layers.AdaptiveAveragePool(1, name=f"{name}_pool")(x)
      pooled = self.conv_bn(pooled, depth, 1, name=f"{name}_pool_conv")
      branches.append(layers.ResizeLike(name=f"{name}_pool_upsample")(
          [pooled, x]))
    x = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    return self.conv_bn(x, depth, 1, name=f"{name}_projection")

  def _separable_then_1x1(self, x, depth, name, rate):
    """Keras' SeparableConv2D (depthwise then pointwise, nothing between) +
    BN + ReLU, then a 1x1 conv + BN + ReLU (cell op_form SEPARABLE_THEN_1X1);
    the depthwise and pointwise halves are separate layers, so prunable."""
    x = self.conv_hyperparams.depthwise_conv2d(
        3, name=f"{name}_depthwise", dilation_rate=rate)(x)
    x = self.conv_bn(x, depth, 1, name=f"{name}_pointwise")
    return self.conv_bn(x, depth, 1, name=f"{name}_conv1x1")

  def _dense_prediction_cell(self, x):
    depth = self._width(self.encoder_depth)
    name = f"{_PREFIX}_dpc"
    outputs = []
    for i, (kernel, rate, index) in enumerate(self.cell_ops):
      op_input = x if index < 0 else outputs[index]
      op_name = f"{name}_op{i}"
      if kernel == 1:
        outputs.append(self.conv_bn(op_input, depth, 1, name=op_name))
      elif self.cell_op_form == "SEPARABLE_THEN_1X1":
        outputs.append(self._separable_then_1x1(op_input, depth, op_name,
                                                rate))
      else:
        outputs.append(self.separable_conv_bn(op_input, depth, op_name, rate))
    if len(outputs) > 1:
      x = keras.layers.Concatenate(name=f"{name}_concat")(outputs)
    else:
      x = outputs[0]
    return self.conv_bn(x, self._width(self.projection_depth), 1,
                        name=f"{name}_projection")

  def _decoder(self, x, low_level):
    name = f"{_PREFIX}_decoder"
    low_level = self.conv_bn(low_level, self._width(self.low_level_depth), 1,
                             name=f"{name}_low_level")
    x = layers.ResizeLike(name=f"{name}_upsample")([x, low_level])
    x = keras.layers.Concatenate(name=f"{name}_concat")([x, low_level])
    depth = self._width(self.decoder_depth)
    x = self.separable_conv_bn(x, depth, f"{name}_conv0")
    return self.separable_conv_bn(x, depth, f"{name}_conv1")

  def _build_heads(self, images):
    extractor = self.feature_extractor
    endpoints = extractor.build(images, last_stage=self.encoder_stage)
    x = endpoints[self.encoder_stage]
    if self.encoder == "aspp":
      x = self._aspp(x)
    else:
      x = self._dense_prediction_cell(x)
    if self.dropout_rate > 0:
      x = keras.layers.Dropout(self.dropout_rate,
                               name=f"{_PREFIX}_encoder_dropout")(x)
    if self.decoder_depth > 0:
      x = self._decoder(x, endpoints[self.low_level_stage])
    return x, {fields.PredictionFields.logits: self.classifier(
        "deeplab_v3_plus_classifier", self.classifier_kernel_size,
        self.classifier_bias)(x)}
