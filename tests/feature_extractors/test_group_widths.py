"""feature_extractor.group_widths: per-stage (and head) widths in the model."""

import pytest

from fast_seg.builders import model_builder
from fast_seg.feature_extractors import base
from tests import helpers


def _config(arch, extractor, filter_scale, widths, num_classes=5):
  """A model config whose feature_extractor lists `widths` {group: scale}."""
  listed = " ".join(f'group_widths {{ group: "{g}" scale: {s} }}'
                    for g, s in widths.items())
  text = helpers.model_text(arch=arch, extractor=extractor,
                            num_classes=num_classes, filter_scale=filter_scale)
  return helpers.pipeline_config(
      text.replace("output_stride: 8", "output_stride: 8 " + listed)).model


def _filters(model, name):
  return model.keras_model.get_layer(name).filters


def test_resnet_icnet_builds_the_listed_widths_and_filter_scale_elsewhere():
  model = model_builder.build(_config(
      "icnet", "resnet_v1_50", 0.5, {"block3": 0.25, "head": 1.0}))
  prefix = "resnet_v1_50"
  expected = {
      f"{prefix}_conv1": 32,  # stem: filter_scale 0.5
      f"{prefix}_block2_unit_1_conv1": 64,
      f"{prefix}_block2_unit_4_conv3": 256,
      f"{prefix}_block3_unit_1_conv1": 64,  # block3: 256 * 0.25
      f"{prefix}_block3_unit_6_conv3": 256,  # 1024 * 0.25
      f"{prefix}_block3_unit_1_shortcut": 256,
      f"{prefix}_block4_unit_3_conv3": 1024,  # filter_scale 0.5
      "icnet_psp_conv": 512,  # head: 1.0
      "icnet_cff1_low_conv": 256,
      "icnet_full_res_conv1": 64,
  }
  assert {name: _filters(model, name) for name in expected} == expected
  assert model.feature_extractor.group_scales == {
      "stem": 0.5, "block1": 0.5, "block2": 0.5, "block3": 0.25,
      "block4": 0.5, "head": 1.0}


def test_resnet_keeps_the_projection_shortcut_when_widths_meet():
  # block1 at 0.25 is 64 wide, like the full stem: the projection shortcut
  # of the full model stays (its weights are in every checkpoint).
  model = model_builder.build(_config(
      "pspnet", "resnet_v1_50", 1.0, {"block1": 0.25}))
  assert _filters(model, "resnet_v1_50_block1_unit_1_shortcut") == 64
  assert _filters(model, "resnet_v1_50_block1_unit_3_conv3") == 64
  assert _filters(model, "resnet_v1_50_block2_unit_1_conv3") == 512


def test_mobilenet_v2_rounds_each_group_to_multiples_of_8():
  model = model_builder.build(_config(
      "icnet", "mobilenet_v2", 1.0, {"stage4": 0.5, "head": 0.3}))
  prefix = "mobilenet_v2"
  expected = {
      f"{prefix}_Conv": 32,
      f"{prefix}_expanded_conv_5_project": 32,  # stage3: uniform 1.0
      f"{prefix}_expanded_conv_6_project": 32,  # stage4: 64 * 0.5
      f"{prefix}_expanded_conv_12_project": 48,  # 96 * 0.5
      f"{prefix}_expanded_conv_13_project": 160,  # stage5: uniform
      "icnet_psp_conv": 152,  # make_divisible(512 * 0.3) = 152
  }
  assert {name: _filters(model, name) for name in expected} == expected
  # expanded_conv_6 (stride 1 at output stride 8) now maps 32 to 32
  # channels, but as in the full model it has no residual add.
  names = {layer.name for layer in model.keras_model.layers}
  assert f"{prefix}_expanded_conv_6_add" not in names
  assert f"{prefix}_expanded_conv_7_add" in names


def test_plain_rounding_heads_and_mobilenet_v1_truncation():
  model = model_builder.build(_config(
      "deeplab_v3_plus", "mobilenet_v1", 1.0, {"stage5": 0.3, "head": 0.5}))
  assert _filters(model, "mobilenet_v1_Conv2d_13_pointwise") == 307
  assert _filters(model, "mobilenet_v1_Conv2d_11_pointwise") == 512
  extractor = model.feature_extractor
  assert extractor.width(256, base.Rounding.PLAIN) == 128
  assert extractor.width(48, base.Rounding.PLAIN, group="stage5") == 14


def test_uniform_group_widths_build_the_uniform_model():
  uniform = model_builder.build(helpers.model_config(
      arch="icnet", extractor="mobilenet_v2", filter_scale=0.5))
  listed = model_builder.build(_config(
      "icnet", "mobilenet_v2", 0.5,
      {"stem": 0.5, "stage4": 0.5, "head": 0.5}))
  assert ([(w.name, w.shape) for w in uniform.keras_model.weights]
          == [(w.name, w.shape) for w in listed.keras_model.weights])


@pytest.mark.parametrize("widths, message", [
    ({"stage3": 0.5}, "model.icnet.feature_extractor.group_widths['stage3']: "
     "unknown group 'stage3' of resnet_v1_50; allowed: stem, block1, block2, "
     "block3, block4, head"),
    ({"block3": 1.5}, "model.icnet.feature_extractor.group_widths['block3']"
     ".scale must be in (0, 1], got 1.5"),
    ({"block3": 0.0}, "must be in (0, 1], got 0.0"),
])
def test_bad_group_widths_are_refused_naming_the_field(widths, message):
  with pytest.raises(ValueError) as error:
    model_builder.build(_config("icnet", "resnet_v1_50", 1.0, widths))
  assert message in str(error.value)


def test_a_group_listed_twice_is_refused():
  text = helpers.model_text(arch="pspnet", extractor="mobilenet_v2").replace(
      "output_stride: 8", 'output_stride: 8 group_widths { group: "head" '
      'scale: 0.5 } group_widths { group: "head" scale: 0.25 }')
  with pytest.raises(ValueError, match=r"group_widths\['head'\] is given twice"):
    model_builder.build(helpers.pipeline_config(text).model)
