"""KerasH5Weights: the two Keras layouts, nested models, flat names."""

import numpy as np
import pytest
import tf_keras as keras

from fast_seg.utils import keras_h5


def _model():
  """conv1 (kernel, bias) -> a nested model 'base' (conv + BN) -> head."""
  inner_in = keras.Input((8, 8, 4))
  x = keras.layers.Conv2D(3, 1, use_bias=False, name="inner_conv")(inner_in)
  x = keras.layers.BatchNormalization(name="inner_bn")(x)
  base = keras.Model(inner_in, x, name="base")
  inputs = keras.Input((8, 8, 2))
  y = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
  y = base(y)
  y = keras.layers.Conv2D(5, 1, name="head")(y)
  model = keras.Model(inputs, y)
  for weight in model.weights:
    weight.assign(np.random.default_rng(len(weight.name)).normal(
        size=weight.shape).astype(np.float32))
  return model


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5")
@pytest.mark.parametrize("whole_model", [True, False])
def test_flat_names_shapes_and_values(tmp_path, whole_model):
  model = _model()
  path = str(tmp_path / "model.h5")
  if whole_model:
    model.save(path)
  else:
    model.save_weights(path)
  with keras_h5.KerasH5Weights(path) as weights:
    shapes = weights.get_variable_to_shape_map()
    assert shapes == {
        "conv1/kernel": (3, 3, 2, 4), "conv1/bias": (4,),
        "base/inner_conv/kernel": (1, 1, 4, 3),
        "base/inner_bn/gamma": (3,), "base/inner_bn/beta": (3,),
        "base/inner_bn/moving_mean": (3,),
        "base/inner_bn/moving_variance": (3,),
        "head/kernel": (1, 1, 3, 5), "head/bias": (5,)}
    np.testing.assert_array_equal(
        weights.get_tensor("base/inner_bn/moving_mean"),
        model.get_layer("base").get_layer("inner_bn").moving_mean.numpy())
    np.testing.assert_array_equal(weights.get_tensor("conv1/kernel"),
                                  model.get_layer("conv1").kernel.numpy())
    assert weights.has_tensor("head/bias")
    assert not weights.has_tensor("global_step")
    assert weights.get("conv1", "bias:0").shape == (4,)
    assert weights.get("conv1", "gamma") is None


def test_not_an_h5_file_is_named(tmp_path):
  path = tmp_path / "model.h5"
  path.write_text("not hdf5")
  with pytest.raises(ValueError, match=f"{path}: not a readable Keras .h5"):
    keras_h5.KerasH5Weights(str(path))
