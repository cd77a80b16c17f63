"""Pruning to per-group widths (feature_extractor.group_widths)."""

import os

import pytest

from fast_seg.builders import model_builder
from fast_seg.compression import compress_lib
from fast_seg.utils import config_util
from tests import helpers


def _model(arch, extractor, widths, filter_scale=1.0):
  text = helpers.model_text(arch=arch, extractor=extractor, num_classes=5,
                            filter_scale=filter_scale)
  listed = " ".join(f'group_widths {{ group: "{g}" scale: {s} }}'
                    for g, s in widths.items())
  return model_builder.build(helpers.pipeline_config(
      text.replace("output_stride: 8", "output_stride: 8 " + listed)).model)


@pytest.mark.parametrize("arch, extractor, widths, max_ratio", [
    ("icnet", "resnet_v1_50", {"block3": 0.5, "block4": 0.25, "head": 0.5},
     0.4),
    # stage3 stays full: stage4's first unit maps 32 to 32 channels.
    ("icnet", "mobilenet_v2", {"stage4": 0.5, "stage5": 0.25}, 0.7),
])
def test_zeroed_filters_prune_to_the_group_widths_with_the_same_outputs(
    arch, extractor, widths, max_ratio):
  full = _model(arch, extractor, {})
  grouped = _model(arch, extractor, widths)
  helpers.check_pruning_keeps_outputs(full, grouped, (1, 96, 96, 3), max_ratio)


@pytest.fixture(name="pruned", scope="module")
def _pruned(trained_run, tmp_path_factory):
  """The shared run (ICNet-MobileNetV2 0.25): stage5 and head to 0.125."""
  config, logdir = trained_run
  output_dir = str(tmp_path_factory.mktemp("group_pruned"))
  lines = []
  report = compress_lib.prune(
      config, logdir, output_dir, None, log=lines.append,
      new_group_scales=compress_lib.parse_group_scales("stage5=0.125,head=0.125"))
  return config, output_dir, report, lines


def test_pruned_checkpoint_restores_into_the_written_config(pruned):
  _, output_dir, report, _ = pruned
  written = config_util.load_pipeline_config(
      os.path.join(output_dir, "pipeline.config"))
  extractor = config_util.get_model_config(written.model).feature_extractor
  assert extractor.filter_scale == 0.25
  assert [(w.group, w.scale) for w in extractor.group_widths] == [
      ("stage5", 0.125), ("head", 0.125)]
  smaller = helpers.restore_every_weight(written, report["output_checkpoint"])
  assert report["params_after"] == smaller.keras_model.count_params()
  layer = smaller.keras_model.get_layer
  assert layer("mobilenet_v2_expanded_conv_16_project").filters == 40
  assert layer("mobilenet_v2_expanded_conv_12_project").filters == 24
  assert layer("icnet_psp_conv").filters == 64


def test_report_gives_the_group_scales(pruned):
  _, _, report, lines = pruned
  assert report["group_scales_before"]["stage5"] == 0.25
  assert report["group_scales_after"] == {
      "stem": 0.25, "stage2": 0.25, "stage3": 0.25, "stage4": 0.25,
      "stage5": 0.125, "head": 0.125}
  assert "filter_scale 0.25 -> 0.25 (stage5 0.125, head 0.125)" in lines[0]
  assert "| stage5 | 0.25 | 0.125 |" in lines
  groups = {row["convs"][0]: row for row in report["groups"]}
  row = groups["mobilenet_v2_expanded_conv_16_project"]
  assert (row["width_group"], row["before"], row["after"]) == (
      "stage5", 80, 40)
  row = groups["mobilenet_v2_expanded_conv_10_project"]  # 10..12 add up
  assert (row["width_group"], row["before"], row["after"]) == (
      "stage4", 24, 24)
  assert groups["icnet_psp_conv"]["width_group"] == "head"


def test_uniform_pruning_keeps_listed_groups_from_widening():
  config = helpers.pipeline_config(helpers.model_text(
      arch="pspnet", extractor="mobilenet_v2", filter_scale=1.0).replace(
          "output_stride: 8",
          'output_stride: 8 group_widths { group: "stage5" scale: 0.25 }'))
  narrower = compress_lib.with_scale(config, 0.5)
  extractor = config_util.get_model_config(narrower.model).feature_extractor
  assert extractor.filter_scale == 0.5
  assert [(w.group, w.scale) for w in extractor.group_widths] == [
      ("stage5", 0.25)]
  # Nothing listed left once every group is uniform again.
  uniform = compress_lib.with_scale(config, 0.25)
  assert not config_util.get_model_config(
      uniform.model).feature_extractor.group_widths


def test_group_scale_errors(trained_run, tmp_path):
  config, logdir = trained_run
  with pytest.raises(ValueError, match="unknown group.*block4.*the groups of "
                     "this model are: stem, stage2, stage3, stage4, stage5, "
                     "head"):
    compress_lib.prune(config, logdir, str(tmp_path), None, log=print,
                       new_group_scales={"block4": 0.5})
  with pytest.raises(ValueError, match=r"stage5=0.5 is wider than the "
                     r"checkpoint's model \(0.25"):
    compress_lib.prune(config, logdir, str(tmp_path), None, log=print,
                       new_group_scales={"stage5": 0.5})
  for text in ("stage5", "stage5=x", "=0.5", ""):
    with pytest.raises(ValueError, match="--group_scales"):
      compress_lib.parse_group_scales(text)
  with pytest.raises(ValueError, match="twice"):
    compress_lib.parse_group_scales("head=0.5,head=0.25")
  with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
    compress_lib.parse_group_scales("head=1.5")
