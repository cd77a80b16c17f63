"""Channel groups read off the graph, and pruning that keeps the function."""

import numpy as np
import pytest
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.compression import filter_pruning
from tests import helpers

_L = keras.layers




@pytest.mark.parametrize("arch, extractor", [
    ("icnet", "resnet_v1_50"), ("icnet", "mobilenet_v2"),
    ("pspnet", "resnet_v1_50"), ("pspnet", "mobilenet_v2")])
def test_zeroed_filters_prune_to_a_smaller_model_with_the_same_outputs(
    arch, extractor):
  full = model_builder.build(helpers.model_config(
      arch=arch, extractor=extractor, num_classes=5, filter_scale=1.0))
  half = model_builder.build(helpers.model_config(
      arch=arch, extractor=extractor, num_classes=5, filter_scale=0.5))
  helpers.check_pruning_keeps_outputs(full, half, (1, 96, 96, 3), 0.3)


def test_scale_one_is_the_identity():
  source = model_builder.build(helpers.model_config(
      arch="icnet", extractor="mobilenet_v2", num_classes=4, filter_scale=0.5))
  target = model_builder.build(helpers.model_config(
      arch="icnet", extractor="mobilenet_v2", num_classes=4, filter_scale=0.5))
  graph, masks, _ = filter_pruning.plan(source.keras_model, target.keras_model)
  assert all(mask.all() for mask in masks.values())
  rows = filter_pruning.apply(source.keras_model, target.keras_model, graph,
                              masks)
  assert all(r["in_before"] == r["in_after"] and r["out_before"] == r["out_after"]
             for r in rows)
  for a, b in zip(source.keras_model.weights, target.keras_model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def _toy(widths, with_lambda=False):
  """conv a, conv b -> add; conv c; concat(add, c) -> conv d -> out (3)."""
  inputs = keras.Input((8, 8, 3))
  a = _L.Conv2D(widths[0], 3, padding="same", name="a")(inputs)
  a = _L.BatchNormalization(name="a_bn")(a)
  b = _L.Conv2D(widths[0], 1, name="b")(inputs)
  added = _L.ReLU(name="relu")(_L.Add(name="add")([a, b]))
  dw = _L.DepthwiseConv2D(3, padding="same", name="dw")(added)
  c = _L.Conv2D(widths[1], 1, name="c")(inputs)
  if with_lambda:
    c = _L.Lambda(lambda t: t[..., ::-1], name="reverse")(c)
  merged = _L.Concatenate(name="concat")([dw, c])
  outputs = _L.Conv2D(3, 1, name="d")(merged)
  return keras.Model(inputs, outputs)


def test_groups_follow_adds_concats_and_depthwise():
  source, target = _toy((6, 4)), _toy((3, 2))
  graph, masks, _ = filter_pruning.plan(source, target)
  groups = {g.name: g for g in graph.groups.values()}
  assert [layer.name for layer in groups["a"].producers] == ["a", "b"]
  assert groups["d"].fixed == "reaches a model output"
  assert graph.layer_outputs["dw"] == graph.layer_outputs["add"]
  assert len(graph.layer_inputs["d"]) == 2  # the concat's two groups
  filter_pruning.apply(source, target, graph, masks)
  shared = masks[graph.layer_outputs["a"][0]]
  np.testing.assert_array_equal(
      target.get_layer("b").get_weights()[0],
      source.get_layer("b").get_weights()[0][..., shared])
  d_in = graph.input_mask("d", masks)
  assert d_in.sum() == 5 and d_in.size == 10
  np.testing.assert_array_equal(
      target.get_layer("d").get_weights()[0],
      source.get_layer("d").get_weights()[0][:, :, d_in, :])
  np.testing.assert_array_equal(
      target.get_layer("dw").get_weights()[0],
      source.get_layer("dw").get_weights()[0][:, :, shared, :])


def test_channels_are_ranked_by_l1_norm():
  source, target = _toy((6, 4)), _toy((6, 2))
  kernel, bias = source.get_layer("c").get_weights()
  kernel[...] = 0.01
  kernel[..., 1] = 1.0
  kernel[..., 3] = 2.0
  source.get_layer("c").set_weights([kernel, bias])
  graph, masks, scores = filter_pruning.plan(source, target)
  group = graph.layer_outputs["c"][0]
  np.testing.assert_array_equal(masks[group], [False, True, False, True])
  assert scores[group][3] > scores[group][1] > scores[group][0]


def test_a_layer_it_cannot_see_through_keeps_its_channels():
  source = _toy((6, 4), with_lambda=True)
  target = _toy((6, 2), with_lambda=True)
  with pytest.raises(ValueError, match=r"c cannot be pruned \(feeds Lambda "
                     r"layer reverse\)"):
    filter_pruning.plan(source, target)
  # The same model pruned elsewhere is fine.
  graph, masks, _ = filter_pruning.plan(source, _toy((3, 4), with_lambda=True))
  assert masks[graph.layer_outputs["c"][0]].all()


def test_groups_with_different_target_widths_are_refused():
  inputs = keras.Input((8, 8, 3))
  widths = {"a": 3, "b": 2, "c": 4, "d": 3}  # a and b meet in an add
  odd = keras.Model(inputs, [_L.Conv2D(n, 1, name=name)(inputs)
                             for name, n in widths.items()])
  with pytest.raises(ValueError, match="convs a, b share their channels"):
    filter_pruning.plan(_toy((6, 4)), odd)


def test_widening_is_refused():
  with pytest.raises(ValueError, match="widens a from 6 to 8"):
    filter_pruning.plan(_toy((6, 4)), _toy((8, 4)))


def _transposed_toy(widths):
  """conv a -> 2x2 transposed conv t -> BN -> concat with a -> conv d."""
  inputs = keras.Input((4, 4, 3))
  a = _L.Conv2D(widths[0], 1, name="a")(inputs)
  t = _L.Conv2DTranspose(widths[1], 2, strides=2, use_bias=False, name="t")(a)
  t = _L.BatchNormalization(name="t_bn")(t)
  small = _L.AveragePooling2D(2, name="pool")(t)
  merged = _L.Concatenate(name="concat")([small, a])
  return keras.Model(inputs, _L.Conv2D(2, 1, name="d")(merged))


def test_transposed_conv_kernels_are_sliced_on_their_own_axes():
  """Conv2DTranspose kernels are (h, w, out, in): output on axis 2."""
  source, target = _transposed_toy((6, 4)), _transposed_toy((3, 2))
  graph, masks, _ = filter_pruning.plan(source, target)
  a_mask = masks[graph.layer_outputs["a"][0]]
  t_mask = masks[graph.layer_outputs["t"][0]]
  assert graph.group(graph.layer_outputs["t"][0]).producers[0].name == "t"
  filter_pruning.apply(source, target, graph, masks)
  kernel = source.get_layer("t").get_weights()[0]
  assert kernel.shape == (2, 2, 4, 6)
  np.testing.assert_array_equal(target.get_layer("t").get_weights()[0],
                                kernel[:, :, t_mask][..., a_mask])
  np.testing.assert_array_equal(
      filter_pruning.filter_norms(source.get_layer("t")),
      np.abs(kernel).sum(axis=(0, 1, 3)))
  # Soft pruning zeroes the same output channels.
  zeroed = filter_pruning.zeroed_weights(source.get_layer("t"), t_mask)[0]
  assert not zeroed[:, :, ~t_mask].any()
  np.testing.assert_array_equal(zeroed[:, :, t_mask], kernel[:, :, t_mask])
