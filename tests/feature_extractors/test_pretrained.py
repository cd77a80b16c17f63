"""Tests for loading ImageNet weights from tf-slim and Keras .h5 files.

The fake files carry random values under exactly the model-zoo names, which
the tests spell out on their own (not through the maps under test).
"""

import os

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from google.protobuf import text_format

from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import mobilenet_v1
from fast_seg.feature_extractors import mobilenet_v2
from fast_seg.feature_extractors import pretrained
from fast_seg.feature_extractors import resnet_v1
from fast_seg.protos import feature_extractor_pb2
from fast_seg.protos import hyperparams_pb2

WeightsFormat = feature_extractor_pb2.FeatureExtractor.WeightsFormat
_BN_KINDS = ("gamma", "beta", "moving_mean", "moving_variance")
# (depth, bottleneck depth, units) of resnet_v1_50 blocks 1-4.
_RESNET_BLOCKS = ((256, 64, 3), (512, 128, 4), (1024, 256, 6), (2048, 512, 3))
# (expansion, depth, repeats) of MobilenetV2 after `Conv`.
_MOBILENET_GROUPS = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4),
                     (6, 96, 3), (6, 160, 3), (6, 320, 1))
# Pointwise depths of MobilenetV1's Conv2d_1..13.
_MOBILENET_V1_DEPTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512,
                        1024, 1024)


def _hyperparams(text=""):
  config = hyperparams_pb2.Hyperparams()
  text_format.Merge(text, config)
  return hyperparams_builder.build(config)


def _random(rng, shape, positive=False):
  value = rng.standard_normal(shape).astype(np.float32)
  return np.abs(value) + 0.5 if positive else value


# -- fake tf-slim checkpoints ----------------------------------------------


def _slim_conv_bn(shapes, scope, kernel_shape, kernel="weights"):
  shapes[f"{scope}/{kernel}"] = kernel_shape
  for kind in _BN_KINDS:
    depth = kernel_shape[-1] if kernel == "weights" else kernel_shape[2]
    shapes[f"{scope}/BatchNorm/{kind}"] = (depth,)


def _resnet_slim_shapes(num_blocks=4):
  """Variable name -> shape of resnet_v1_50.ckpt (blocks 1..num_blocks)."""
  shapes = {}
  _slim_conv_bn(shapes, "resnet_v1_50/conv1", (7, 7, 3, 64))
  in_depth = 64
  for b, (depth, bottleneck, units) in enumerate(
      _RESNET_BLOCKS[:num_blocks], start=1):
    for u in range(1, units + 1):
      scope = f"resnet_v1_50/block{b}/unit_{u}/bottleneck_v1"
      if u == 1:
        _slim_conv_bn(shapes, scope + "/shortcut", (1, 1, in_depth, depth))
      _slim_conv_bn(shapes, scope + "/conv1", (1, 1, in_depth, bottleneck))
      _slim_conv_bn(shapes, scope + "/conv2", (3, 3, bottleneck, bottleneck))
      _slim_conv_bn(shapes, scope + "/conv3", (1, 1, bottleneck, depth))
      in_depth = depth
  return shapes


def _mobilenet_slim_shapes():
  """Variable name -> shape of mobilenet_v2_1.0_224.ckpt (no Conv_1)."""
  shapes = {}
  _slim_conv_bn(shapes, "MobilenetV2/Conv", (3, 3, 3, 32))
  in_depth, index = 32, 0
  for expansion, depth, repeats in _MOBILENET_GROUPS:
    for _ in range(repeats):
      unit = "expanded_conv" if index == 0 else f"expanded_conv_{index}"
      scope = "MobilenetV2/" + unit
      inner = in_depth * expansion
      if expansion > 1:
        _slim_conv_bn(shapes, scope + "/expand", (1, 1, in_depth, inner))
      _slim_conv_bn(shapes, scope + "/depthwise", (3, 3, inner, 1),
                    kernel="depthwise_weights")
      _slim_conv_bn(shapes, scope + "/project", (1, 1, inner, depth))
      in_depth, index = depth, index + 1
  return shapes


def _mobilenet_v1_slim_shapes():
  """Variable name -> shape of mobilenet_v1_1.0_224.ckpt (no Logits)."""
  shapes = {}
  _slim_conv_bn(shapes, "MobilenetV1/Conv2d_0", (3, 3, 3, 32))
  in_depth = 32
  for i, depth in enumerate(_MOBILENET_V1_DEPTHS, start=1):
    _slim_conv_bn(shapes, f"MobilenetV1/Conv2d_{i}_depthwise",
                  (3, 3, in_depth, 1), kernel="depthwise_weights")
    _slim_conv_bn(shapes, f"MobilenetV1/Conv2d_{i}_pointwise",
                  (1, 1, in_depth, depth))
    in_depth = depth
  return shapes


def _random_arrays(shapes, seed):
  rng = np.random.default_rng(seed)
  return {name: _random(rng, shape, positive=name.endswith("variance"))
          for name, shape in shapes.items()}


def _write_slim_checkpoint(prefix, arrays):
  """Saves `arrays` as a TF1 checkpoint the way slim's Saver did."""
  with tf.Graph().as_default():
    for name, value in arrays.items():
      tf.compat.v1.get_variable(name, initializer=value)
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      saver.save(sess, prefix, write_meta_graph=False,
                 write_state=True)
  return prefix


def _layer(extractor, name):
  (layer,) = [l for l in extractor.layers if l.name == name]
  return layer


def _resnet(filter_scale=1.0, last_stage=None, hyperparams=None):
  extractor = resnet_v1.ResNetV1_50(hyperparams or _hyperparams(),
                                    filter_scale=filter_scale)
  extractor.build(keras.Input((64, 64, 3)), last_stage=last_stage)
  return extractor


def _digest(value):
  return np.asarray(value, np.float32).tobytes()


@pytest.fixture(scope="module")
def resnet_slim(tmp_path_factory):
  """A full-size fake resnet_v1_50.ckpt with extra, ignored variables."""
  arrays = _random_arrays(_resnet_slim_shapes(), seed=1)
  extras = {
      "resnet_v1_50/logits/weights": np.ones((1, 1, 2048, 4), np.float32),
      "resnet_v1_50/logits/biases": np.ones((4,), np.float32),
      "resnet_v1_50/conv1/weights/Momentum": np.ones((7, 7, 3, 64),
                                                     np.float32),
      "global_step": np.array(7, np.int64),
  }
  prefix = str(tmp_path_factory.mktemp("slim") / "resnet_v1_50.ckpt")
  _write_slim_checkpoint(prefix, {**arrays, **extras})
  return prefix, arrays


def test_slim_resnet_full_map(resnet_slim):
  prefix, arrays = resnet_slim
  extractor = _resnet()
  count = pretrained.load_imagenet_weights(extractor, prefix,
                                           WeightsFormat.AUTO)
  assert count == len(arrays) == 265
  expected = {
      ("resnet_v1_50_conv1", "kernel"): "resnet_v1_50/conv1/weights",
      ("resnet_v1_50_conv1_bn", "moving_mean"):
          "resnet_v1_50/conv1/BatchNorm/moving_mean",
      ("resnet_v1_50_block1_unit_1_conv1", "kernel"):
          "resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights",
      ("resnet_v1_50_block2_unit_1_shortcut", "kernel"):
          "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/weights",
      ("resnet_v1_50_block2_unit_1_shortcut_bn", "moving_variance"):
          "resnet_v1_50/block2/unit_1/bottleneck_v1/shortcut/BatchNorm/"
          "moving_variance",
      ("resnet_v1_50_block3_unit_4_conv2", "kernel"):
          "resnet_v1_50/block3/unit_4/bottleneck_v1/conv2/weights",
      ("resnet_v1_50_block4_unit_3_conv3_bn", "gamma"):
          "resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/gamma",
      ("resnet_v1_50_block4_unit_3_conv3_bn", "beta"):
          "resnet_v1_50/block4/unit_3/bottleneck_v1/conv3/BatchNorm/beta",
  }
  for (layer_name, kind), name in expected.items():
    value = getattr(_layer(extractor, layer_name), kind).numpy()
    np.testing.assert_array_equal(value, arrays[name])
  # Every model weight got its own array of the file (values are random, so
  # equal bytes mean the same array).
  by_digest = {_digest(v): k for k, v in arrays.items()}
  used = set()
  for layer in extractor.layers:
    for var in layer.weights:
      name = by_digest.get(_digest(var.numpy()))
      assert name is not None, var.name
      used.add(name)
  assert used == set(arrays)


def test_slim_resnet_explicit_format_and_directory(resnet_slim):
  prefix, arrays = resnet_slim
  extractor = _resnet(last_stage="stem")
  count = pretrained.load_imagenet_weights(extractor, prefix,
                                           WeightsFormat.TF_SLIM)
  assert count == 5
  np.testing.assert_array_equal(
      _layer(extractor, "resnet_v1_50_conv1").kernel.numpy(),
      arrays["resnet_v1_50/conv1/weights"])
  # A directory with a `checkpoint` state file reads its latest checkpoint.
  extractor = _resnet(last_stage="stem")
  assert pretrained.load_imagenet_weights(
      extractor, os.path.dirname(prefix), WeightsFormat.TF_SLIM) == 5
  np.testing.assert_array_equal(
      _layer(extractor, "resnet_v1_50_conv1_bn").beta.numpy(),
      arrays["resnet_v1_50/conv1/BatchNorm/beta"])


@pytest.fixture(scope="module")
def small_resnet_arrays():
  return _random_arrays(_resnet_slim_shapes(num_blocks=1), seed=2)


def test_slim_missing_variables_reported_by_name(tmp_path,
                                                 small_resnet_arrays):
  arrays = dict(small_resnet_arrays)
  del arrays["resnet_v1_50/conv1/weights"]
  del arrays["resnet_v1_50/block1/unit_2/bottleneck_v1/conv2/BatchNorm/"
             "moving_variance"]
  prefix = _write_slim_checkpoint(str(tmp_path / "partial.ckpt"), arrays)
  extractor = _resnet(last_stage="block1")
  before = _layer(extractor, "resnet_v1_50_block1_unit_1_conv1").kernel.numpy()
  with pytest.raises(ValueError) as e:
    pretrained.load_imagenet_weights(extractor, prefix, WeightsFormat.AUTO)
  message = str(e.value)
  assert prefix in message
  assert "missing: resnet_v1_50/conv1/weights" in message
  assert ("missing: resnet_v1_50/block1/unit_2/bottleneck_v1/conv2/BatchNorm/"
          "moving_variance") in message
  assert "2 problem(s)" in message
  # All or nothing: no weight was assigned.
  np.testing.assert_array_equal(
      _layer(extractor, "resnet_v1_50_block1_unit_1_conv1").kernel.numpy(),
      before)


def test_slim_shape_mismatch_names_variable_and_filter_scale(
    tmp_path, small_resnet_arrays):
  prefix = _write_slim_checkpoint(str(tmp_path / "full.ckpt"),
                                  small_resnet_arrays)
  extractor = _resnet(filter_scale=0.5, last_stage="block1")
  with pytest.raises(ValueError) as e:
    pretrained.load_imagenet_weights(extractor, prefix, WeightsFormat.TF_SLIM)
  message = str(e.value)
  assert ("resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/weights: file has "
          "(1, 1, 64, 64), model needs (1, 1, 32, 32)") in message
  assert ("resnet_v1_50/conv1/weights: file has (7, 7, 3, 64), model needs "
          "(7, 7, 3, 32)") in message
  assert "filter_scale 0.5" in message


def test_slim_mobilenet_full_map(tmp_path):
  arrays = _random_arrays(_mobilenet_slim_shapes(), seed=3)
  extras = {
      "MobilenetV2/Conv_1/weights": np.ones((1, 1, 320, 1280), np.float32),
      "MobilenetV2/Logits/Conv2d_1c_1x1/weights": np.ones((1, 1, 1280, 3),
                                                          np.float32),
      "global_step": np.array(1, np.int64),
  }
  prefix = _write_slim_checkpoint(str(tmp_path / "mobilenet_v2_1.0_224.ckpt"),
                                  {**arrays, **extras})
  extractor = mobilenet_v2.MobileNetV2(_hyperparams())
  extractor.build(keras.Input((64, 64, 3)))
  count = pretrained.load_imagenet_weights(extractor, prefix)
  assert count == len(arrays) == 255
  checks = {
      ("mobilenet_v2_Conv", "kernel"): "MobilenetV2/Conv/weights",
      ("mobilenet_v2_Conv_bn", "gamma"): "MobilenetV2/Conv/BatchNorm/gamma",
      ("mobilenet_v2_expanded_conv_depthwise", "depthwise_kernel"):
          "MobilenetV2/expanded_conv/depthwise/depthwise_weights",
      ("mobilenet_v2_expanded_conv_depthwise_bn", "moving_mean"):
          "MobilenetV2/expanded_conv/depthwise/BatchNorm/moving_mean",
      ("mobilenet_v2_expanded_conv_project", "kernel"):
          "MobilenetV2/expanded_conv/project/weights",
      ("mobilenet_v2_expanded_conv_1_expand", "kernel"):
          "MobilenetV2/expanded_conv_1/expand/weights",
      ("mobilenet_v2_expanded_conv_16_project_bn", "moving_variance"):
          "MobilenetV2/expanded_conv_16/project/BatchNorm/moving_variance",
  }
  for (layer_name, kind), name in checks.items():
    value = getattr(_layer(extractor, layer_name), kind).numpy()
    np.testing.assert_array_equal(value, arrays[name])
  by_digest = {_digest(v): k for k, v in arrays.items()}
  used = {by_digest[_digest(v.numpy())]
          for l in extractor.layers for v in l.weights}
  assert used == set(arrays)


def test_slim_mobilenet_loads_conv_1_where_the_pyramid_builds_it(tmp_path):
  # build_pyramid (FPN) adds Conv_1, the checkpoint's 1x1 conv to 1280.
  shapes = _mobilenet_slim_shapes()
  _slim_conv_bn(shapes, "MobilenetV2/Conv_1", (1, 1, 320, 1280))
  arrays = _random_arrays(shapes, seed=5)
  prefix = _write_slim_checkpoint(str(tmp_path / "mobilenet_v2_1.0_224.ckpt"),
                                  arrays)
  extractor = mobilenet_v2.MobileNetV2(_hyperparams(), output_stride=32)
  extractor.build_pyramid(keras.Input((64, 64, 3)))
  assert pretrained.load_imagenet_weights(extractor, prefix) == len(arrays)
  np.testing.assert_array_equal(
      _layer(extractor, "mobilenet_v2_Conv_1").kernel.numpy(),
      arrays["MobilenetV2/Conv_1/weights"])
  np.testing.assert_array_equal(
      _layer(extractor, "mobilenet_v2_Conv_1_bn").gamma.numpy(),
      arrays["MobilenetV2/Conv_1/BatchNorm/gamma"])


@pytest.fixture(scope="module")
def mobilenet_v1_slim(tmp_path_factory):
  """A full-size fake mobilenet_v1_1.0_224.ckpt with ignored extras."""
  arrays = _random_arrays(_mobilenet_v1_slim_shapes(), seed=11)
  extras = {
      "MobilenetV1/Logits/Conv2d_1c_1x1/weights": np.ones((1, 1, 1024, 3),
                                                          np.float32),
      "MobilenetV1/Logits/Conv2d_1c_1x1/biases": np.ones((3,), np.float32),
      "global_step": np.array(1, np.int64),
  }
  prefix = str(tmp_path_factory.mktemp("v1") / "mobilenet_v1_1.0_224.ckpt")
  _write_slim_checkpoint(prefix, {**arrays, **extras})
  return prefix, arrays


def _mobilenet_v1(output_stride=32):
  extractor = mobilenet_v1.MobileNetV1(_hyperparams(),
                                       output_stride=output_stride)
  extractor.build(keras.Input((32, 32, 3)))
  return extractor


def test_slim_mobilenet_v1_full_map(mobilenet_v1_slim):
  prefix, arrays = mobilenet_v1_slim
  extractor = _mobilenet_v1()
  count = pretrained.load_imagenet_weights(extractor, prefix)
  # Conv2d_0: 1 + 4; each of 13 units: 2 x (1 + 4).
  assert count == len(arrays) == 135
  checks = {
      ("mobilenet_v1_Conv2d_0", "kernel"): "MobilenetV1/Conv2d_0/weights",
      ("mobilenet_v1_Conv2d_0_bn", "gamma"):
          "MobilenetV1/Conv2d_0/BatchNorm/gamma",
      ("mobilenet_v1_Conv2d_0_bn", "moving_variance"):
          "MobilenetV1/Conv2d_0/BatchNorm/moving_variance",
      ("mobilenet_v1_Conv2d_1_depthwise", "depthwise_kernel"):
          "MobilenetV1/Conv2d_1_depthwise/depthwise_weights",
      ("mobilenet_v1_Conv2d_1_depthwise_bn", "beta"):
          "MobilenetV1/Conv2d_1_depthwise/BatchNorm/beta",
      ("mobilenet_v1_Conv2d_7_pointwise", "kernel"):
          "MobilenetV1/Conv2d_7_pointwise/weights",
      ("mobilenet_v1_Conv2d_13_pointwise_bn", "moving_mean"):
          "MobilenetV1/Conv2d_13_pointwise/BatchNorm/moving_mean",
  }
  for (layer_name, kind), name in checks.items():
    value = getattr(_layer(extractor, layer_name), kind).numpy()
    np.testing.assert_array_equal(value, arrays[name])
  # Every weight got its own array of the file.
  by_digest = {_digest(v): k for k, v in arrays.items()}
  used = [by_digest[_digest(v.numpy())]
          for l in extractor.layers for v in l.weights]
  assert sorted(used) == sorted(arrays)


def test_slim_mobilenet_v1_dilated_loads_the_same_weights(mobilenet_v1_slim):
  """Output stride changes dilations only, never a weight's name or shape."""
  prefix, arrays = mobilenet_v1_slim
  extractor = _mobilenet_v1(output_stride=8)
  assert pretrained.load_imagenet_weights(extractor, prefix) == 135
  np.testing.assert_array_equal(
      _layer(extractor, "mobilenet_v1_Conv2d_12_depthwise").depthwise_kernel,
      arrays["MobilenetV1/Conv2d_12_depthwise/depthwise_weights"])


def test_slim_batch_norm_without_gamma_loads_as_one(tmp_path):
  """slim's batch_norm(scale=False) saves no gamma: it is loaded as 1."""
  arrays = {k: v for k, v in _random_arrays(
      _mobilenet_v1_slim_shapes(), seed=12).items()
            if not k.endswith("/gamma")}
  prefix = _write_slim_checkpoint(str(tmp_path / "no_scale.ckpt"), arrays)
  extractor = _mobilenet_v1()
  assert pretrained.load_imagenet_weights(extractor, prefix) == 135
  bn = _layer(extractor, "mobilenet_v1_Conv2d_5_pointwise_bn")
  np.testing.assert_array_equal(bn.gamma.numpy(), np.ones(256, np.float32))
  np.testing.assert_array_equal(
      bn.beta.numpy(), arrays["MobilenetV1/Conv2d_5_pointwise/BatchNorm/beta"])
  # Without the beta too, the batch norm is missing: reported, not invented.
  del arrays["MobilenetV1/Conv2d_0/BatchNorm/beta"]
  prefix = _write_slim_checkpoint(str(tmp_path / "no_bn.ckpt"), arrays)
  with pytest.raises(ValueError) as e:
    pretrained.load_imagenet_weights(_mobilenet_v1(), prefix)
  assert "missing: MobilenetV1/Conv2d_0/BatchNorm/gamma" in str(e.value)
  assert "missing: MobilenetV1/Conv2d_0/BatchNorm/beta" in str(e.value)
  assert "2 problem(s)" in str(e.value)


def test_missing_file(tmp_path):
  extractor = _resnet(last_stage="stem")
  for name in ("nothing.ckpt", "nothing.h5"):
    path = str(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=path):
      pretrained.load_imagenet_weights(extractor, path)
  with pytest.raises(ValueError, match="weights_path is empty"):
    pretrained.load_imagenet_weights(extractor, "")


def test_not_a_checkpoint(tmp_path):
  path = tmp_path / "garbage.ckpt"
  path.write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match=str(path)):
    pretrained.load_imagenet_weights(_resnet(last_stage="stem"), str(path))


def test_unbuilt_extractor():
  extractor = resnet_v1.ResNetV1_50(_hyperparams())
  with pytest.raises(ValueError, match="call build"):
    pretrained.load_imagenet_weights(extractor, __file__,
                                     WeightsFormat.TF_SLIM)


def test_resolve_format():
  auto = WeightsFormat.AUTO
  assert pretrained.resolve_format("a/b.h5", auto) == WeightsFormat.KERAS_H5
  assert pretrained.resolve_format("a/B.H5", auto) == WeightsFormat.KERAS_H5
  assert pretrained.resolve_format("a/b.ckpt", auto) == WeightsFormat.TF_SLIM
  assert pretrained.resolve_format("a/b.h5", WeightsFormat.TF_SLIM) == \
      WeightsFormat.TF_SLIM


# -- Keras-applications .h5 -------------------------------------------------


def _write_keras_h5(path, layers, under_model_weights=False):
  """Writes {layer: {weight: array}} in the layout of Keras save_weights."""
  with h5py.File(path, "w") as f:
    root = f.create_group("model_weights") if under_model_weights else f
    root.attrs["layer_names"] = [name.encode("utf8") for name in layers]
    root.attrs["backend"] = b"tensorflow"
    for layer, weights in layers.items():
      group = root.create_group(layer)
      names = [f"{layer}/{w}".encode("utf8") for w in weights]
      group.attrs["weight_names"] = np.array(names, dtype="S") if names \
          else np.zeros((0,), dtype="S1")
      for weight, value in weights.items():
        group.create_dataset(f"{layer}/{weight}", data=value)


def _keras_resnet_stem(rng, width=64):
  return {
      "input_1": {},
      "conv1_pad": {},
      "conv1_conv": {"kernel:0": _random(rng, (7, 7, 3, width)),
                     "bias:0": _random(rng, (width,))},
      "conv1_bn": {"gamma:0": _random(rng, (width,)),
                   "beta:0": _random(rng, (width,)),
                   "moving_mean:0": _random(rng, (width,)),
                   "moving_variance:0": _random(rng, (width,), True)},
      "predictions": {"kernel:0": np.ones((2048, 10), np.float32)},
  }


@pytest.mark.parametrize("under_model_weights", [False, True])
def test_h5_handwritten_stem_folds_bias(tmp_path, under_model_weights):
  layers = _keras_resnet_stem(np.random.default_rng(4))
  path = str(tmp_path / "resnet50_notop.h5")
  _write_keras_h5(path, layers, under_model_weights)
  extractor = _resnet(last_stage="stem")
  count = pretrained.load_imagenet_weights(extractor, path)
  assert count == 5
  np.testing.assert_array_equal(
      _layer(extractor, "resnet_v1_50_conv1").kernel.numpy(),
      layers["conv1_conv"]["kernel:0"])
  bn = _layer(extractor, "resnet_v1_50_conv1_bn")
  np.testing.assert_allclose(
      bn.moving_mean.numpy(),
      layers["conv1_bn"]["moving_mean:0"] - layers["conv1_conv"]["bias:0"],
      rtol=1e-6)
  np.testing.assert_array_equal(bn.gamma.numpy(), layers["conv1_bn"]["gamma:0"])
  np.testing.assert_array_equal(bn.moving_variance.numpy(),
                                layers["conv1_bn"]["moving_variance:0"])


def _conv_bn_model(extractor, inputs):
  extractor.build(inputs, last_stage="stem")
  conv = _layer(extractor, "resnet_v1_50_conv1")
  bn = _layer(extractor, "resnet_v1_50_conv1_bn")
  return keras.Model(inputs, bn(conv(inputs)))


def test_h5_folded_bias_gives_the_same_output(tmp_path):
  """BN(conv(x) + b) of the file equals BN(conv(x)) of the loaded layers."""
  layers = _keras_resnet_stem(np.random.default_rng(5))
  path = str(tmp_path / "stem.h5")
  _write_keras_h5(path, layers)
  extractor = resnet_v1.ResNetV1_50(_hyperparams())
  inputs = keras.Input((16, 16, 3))
  conv = _conv_bn_model(extractor, inputs)
  pretrained.load_imagenet_weights(extractor, path)
  x = np.random.default_rng(6).standard_normal((1, 16, 16, 3)).astype(
      np.float32)
  bn = layers["conv1_bn"]
  reference = tf.nn.conv2d(x, layers["conv1_conv"]["kernel:0"], 2, "SAME")
  reference = tf.nn.batch_normalization(
      reference + layers["conv1_conv"]["bias:0"], bn["moving_mean:0"],
      bn["moving_variance:0"], bn["beta:0"], bn["gamma:0"], 1e-5)
  np.testing.assert_allclose(conv(x, training=False).numpy(),
                             reference.numpy(), rtol=1e-4, atol=1e-4)


def test_h5_missing_and_mismatch_reported(tmp_path):
  layers = _keras_resnet_stem(np.random.default_rng(7))
  del layers["conv1_bn"]["gamma:0"]
  path = str(tmp_path / "broken.h5")
  _write_keras_h5(path, layers)
  with pytest.raises(ValueError) as e:
    pretrained.load_imagenet_weights(_resnet(last_stage="stem"), path)
  assert path in str(e.value)
  assert "missing: conv1_bn/gamma:0" in str(e.value)
  with pytest.raises(ValueError) as e:
    pretrained.load_imagenet_weights(
        _resnet(filter_scale=0.5, last_stage="stem"), path)
  assert ("conv1_conv/kernel:0: file has (7, 7, 3, 64), model needs "
          "(7, 7, 3, 32)") in str(e.value)
  assert "filter_scale" in str(e.value)


def _randomize(model, seed):
  rng = np.random.default_rng(seed)
  for var in model.weights:
    var.assign(_random(rng, var.shape, positive="variance" in var.name))


def test_h5_keras_applications_resnet50_full_map(tmp_path):
  """A file written by Keras' own save_weights for its ResNet50."""
  reference = keras.applications.ResNet50(
      weights=None, include_top=False, input_shape=(64, 64, 3))
  _randomize(reference, seed=8)
  path = str(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
  reference.save_weights(path)
  extractor = _resnet()
  count = pretrained.load_imagenet_weights(extractor, path)
  assert count == 265
  get = reference.get_layer
  pairs = {
      "resnet_v1_50_conv1": "conv1_conv",
      "resnet_v1_50_block1_unit_1_shortcut": "conv2_block1_0_conv",
      "resnet_v1_50_block1_unit_1_conv1": "conv2_block1_1_conv",
      "resnet_v1_50_block2_unit_3_conv2": "conv3_block3_2_conv",
      "resnet_v1_50_block3_unit_6_conv3": "conv4_block6_3_conv",
      "resnet_v1_50_block4_unit_1_shortcut": "conv5_block1_0_conv",
  }
  for ours, theirs in pairs.items():
    np.testing.assert_array_equal(_layer(extractor, ours).kernel.numpy(),
                                  get(theirs).kernel.numpy())
    bn = _layer(extractor, ours + "_bn")
    their_bn = get(theirs[:-len("conv")] + "bn")
    np.testing.assert_array_equal(bn.gamma.numpy(), their_bn.gamma.numpy())
    np.testing.assert_allclose(
        bn.moving_mean.numpy(),
        their_bn.moving_mean.numpy() - get(theirs).bias.numpy(), rtol=1e-6)


def test_h5_keras_applications_mobilenet_v2_same_features(tmp_path):
  """Loaded from Keras' MobileNetV2 file, our net computes the same features.

  Both pad stride-2 convs the same way at even sizes, so at output stride 32
  the networks are identical given the same batch-norm epsilon.
  """
  reference = keras.applications.MobileNetV2(
      weights=None, include_top=False, input_shape=(64, 64, 3))
  _randomize(reference, seed=9)
  path = str(tmp_path / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_"
             "1.0_224_no_top.h5")
  reference.save_weights(path)
  extractor = mobilenet_v2.MobileNetV2(
      _hyperparams("batch_norm { epsilon: 0.001 }"), output_stride=32)
  inputs = keras.Input((64, 64, 3))
  endpoints = extractor.build(extractor.preprocess(inputs))
  assert pretrained.load_imagenet_weights(extractor, path) == 255
  ours = keras.Model(inputs, endpoints["stage5"])
  theirs = keras.Model(reference.input,
                       reference.get_layer("block_16_project_BN").output)
  images = np.random.default_rng(10).uniform(0, 255, (2, 64, 64, 3)).astype(
      np.float32)
  expected = theirs(images / 127.5 - 1.0, training=False).numpy()
  actual = ours(images, training=False).numpy()
  scale = np.abs(expected).max()
  np.testing.assert_allclose(actual / scale, expected / scale, atol=1e-4)
