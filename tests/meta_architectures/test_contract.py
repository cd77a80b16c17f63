"""The SegmentationModel contract: build step, aux target, registry."""

import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import model as model_lib
from fast_seg.core import standard_fields as fields
from fast_seg.protos import model_pb2
from tests import helpers

LOGITS = fields.PredictionFields.logits


class _TinyNet(model_lib.SegmentationModel):
  """A 3x3 conv on the stem: settings stored after super().__init__."""

  def __init__(self, base, depth=8, main_key=LOGITS):
    super().__init__(base.num_classes, base.ignore_label,
                     base.feature_extractor, base.conv_hyperparams,
                     base.loss_fn, "tiny", base.binary_output)
    self.depth = depth
    self.main_key = main_key

  def _build_heads(self, preprocessed_images):
    x = self.conv_bn(preprocessed_images, self.depth, 3, name="tiny_conv",
                     strides=4)
    heads = {self.main_key: self.classifier("tiny_classifier")(x)}
    return x, heads


def _base(loss="softmax_cross_entropy {}"):
  """A built model whose extractor, hyperparams and loss _TinyNet borrows."""
  return model_builder.build(helpers.model_config(
      arch="dilated_fcn", extractor="mobilenet_v1", num_classes=4,
      filter_scale=0.25, loss=loss))


_AUX_TARGET_LOSS = ("softmax_cross_entropy {} "
                    "auxiliary_target { class_ids: 1 weight: 0.5 }")


def test_subclass_sets_its_attributes_after_super_init():
  model = _TinyNet(_base(), depth=6)
  assert model.keras_model.get_layer("tiny_conv").filters == 6
  logits = model.predict(tf.zeros((1, 32, 32, 3)))[LOGITS]
  assert logits.shape == (1, 8, 8, 4)
  assert model.classifier_layer_names == {"tiny_classifier"}


def test_aux_target_reads_the_returned_features():
  model = _TinyNet(_base(_AUX_TARGET_LOSS))
  aux = model.keras_model.get_layer("tiny_aux_target_classifier")
  assert aux.filters == 1
  assert aux.input is model.keras_model.get_layer("tiny_classifier").input
  assert model.classifier_layer_names == {"tiny_classifier",
                                          "tiny_aux_target_classifier"}
  out = model.predict(tf.zeros((1, 32, 32, 3)), training=True)
  assert set(out) == {LOGITS, model_lib.AUX_TARGET}
  assert "tiny_aux_target_classifier" not in {
      l.name for l in model.inference_model.layers}


def test_main_logits_are_required():
  with pytest.raises(NotImplementedError, match="main logits"):
    _TinyNet(_base(), main_key="not_logits")


def test_built_once():
  model = _TinyNet(_base())
  with pytest.raises(ValueError, match="already built"):
    model.build()


def test_every_model_oneof_field_has_a_registered_architecture():
  oneof = model_pb2.Model.DESCRIPTOR.oneofs_by_name["model"]
  assert model_lib.registered_names() == sorted(f.name for f in oneof.fields)
  for name in model_lib.registered_names():
    assert issubclass(model_lib.get(name), model_lib.SegmentationModel)


def test_unknown_architecture_names_the_registered_ones():
  with pytest.raises(ValueError, match=r"model: unknown 'segnet'; allowed: "
                     r"cgnet, deeplab_v3_plus, dilated_fcn, fpn, icnet"):
    model_lib.get("segnet")


def test_a_name_registers_one_class():
  with pytest.raises(ValueError, match="'icnet' is registered twice"):
    model_lib.register("icnet")(_TinyNet)


def test_unregister_undoes_register():
  model_lib.register("tiny")(_TinyNet)
  assert model_lib.get("tiny") is _TinyNet
  model_lib.unregister("tiny")
  assert "tiny" not in model_lib.registered_names()


def test_built_model_is_a_keras_functional_model():
  model = _TinyNet(_base())
  assert isinstance(model.keras_model, keras.Model)
  assert model.inference_model.name == "tiny"
  assert model.keras_model.name == "tiny_train"
