"""CGNet: the paper's parameter count, stride, blocks and input injection."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.training import train_lib
from tests import helpers

LOGITS = fields.PredictionFields.logits


def _cgnet(num_classes=19, filter_scale=1.0, extractor="cgnet"):
  return model_builder.build(helpers.model_config(
      arch="cgnet", extractor=extractor, num_classes=num_classes,
      filter_scale=filter_scale))


def test_parameter_count_is_the_papers():
  # CGNet-M3N21 on Cityscapes (19 classes): "0.5 M" in the paper; 496,325
  # trainable weights here (BN moving statistics are not parameters).
  model = _cgnet(num_classes=19)
  trainable = sum(int(np.prod(w.shape))
                  for w in model.inference_model.trainable_weights)
  assert abs(trainable - 0.5e6) / 0.5e6 < 0.05
  assert trainable == 496325
  # 11 classes: 256 * 8 + 8 fewer classifier weights.
  camvid = _cgnet(num_classes=11)
  assert sum(int(np.prod(w.shape)) for w in
             camvid.inference_model.trainable_weights) == 496325 - 2056


def test_stride_8_logits_and_stage_widths():
  model = _cgnet(num_classes=11)
  logits = model.predict(tf.zeros((1, 360, 480, 3)))[LOGITS]
  assert logits.shape == (1, 45, 60, 11)
  odd = model.predict(tf.zeros((1, 65, 97, 3)))[LOGITS]
  assert odd.shape == (1, 9, 13, 11)
  outputs = {io.name: io.output.shape[-1]
             for io in model.feature_extractor.stage_io}
  # [stem 32 + image 3], [blocks 64 + first block 64 + image 3], [128 + 128].
  assert outputs == {"stem": 35, "stage2": 131, "stage3": 256}


def test_blocks_dilations_and_residuals():
  layers = {layer.name: layer for layer in _cgnet().keras_model.layers}
  surround = {name: layer.dilation_rate for name, layer in layers.items()
              if name.endswith("_surround")}
  assert len(surround) == 3 + 21  # M + N context guided blocks
  assert surround["cgnet_stage2_down_surround"] == (2, 2)
  assert surround["cgnet_stage3_block20_surround"] == (4, 4)
  adds = [name for name in layers if name.endswith("_add")]
  assert len(adds) == 2 + 20  # every block but the two down-sampling ones
  # Global context: width / 8 in stage 2, width / 16 in stage 3.
  assert layers["cgnet_stage2_block1_global_fc1"].filters == 8
  assert layers["cgnet_stage3_block1_global_fc1"].filters == 8
  assert layers["cgnet_stage3_down_reduce"].filters == 128
  prelu = layers["cgnet_stem_conv1_prelu"]
  assert np.allclose(prelu.get_weights()[0], 0.25)


def test_input_injection_is_the_pooled_image():
  model = _cgnet(num_classes=11, filter_scale=0.25)
  images = np.random.default_rng(0).uniform(0, 255, (1, 32, 48, 3))
  preprocessed = model.preprocess(tf.constant(images, tf.float32))
  stems = {io.name: io.output for io in model.feature_extractor.stage_io}
  probe = keras.Model(model.keras_model.input,
                      [stems["stem"], stems["stage2"]])
  stem, stage2 = probe(preprocessed)
  half = tf.nn.avg_pool2d(preprocessed, 3, 2, "SAME")
  quarter = tf.nn.avg_pool2d(half, 3, 2, "SAME")
  np.testing.assert_allclose(stem[..., -3:], half, atol=1e-6)
  np.testing.assert_allclose(stage2[..., -3:], quarter, atol=1e-6)
  # Half width rounds each block's halves: 64 * 0.25 = 16, 128 * 0.25 = 32.
  assert stem.shape[-1] == 8 + 3 and stage2.shape[-1] == 16 + 16 + 3


def test_cgnet_needs_its_trunk_and_icnet_a_deeper_one():
  with pytest.raises(ValueError, match=r"model.cgnet.feature_extractor.type "
                     r"must be 'cgnet'.*got 'mobilenet_v2'"):
    _cgnet(extractor="mobilenet_v2")
  with pytest.raises(ValueError, match=r"model.icnet.feature_extractor.type "
                     r"'cgnet' ends at its first stride-8 stage"):
    model_builder.build(helpers.model_config(
        arch="icnet", extractor="cgnet", num_classes=3))


def test_cgnet_output_stride_is_8():
  with pytest.raises(ValueError, match=r"model.cgnet.feature_extractor.output_stride must be 8 for CGNet .*got 16"):
    model_builder.build(helpers.model_config(
        arch="cgnet", extractor="cgnet", num_classes=3, output_stride=16))


@pytest.mark.slow  # two CGNet traces, ~70 s; make test-all
def test_cgnet_trains_with_memory_saving(tiny_dataset, tmp_path):
  # Each stage is built from its input alone, so the recomputed trunk
  # gives the same step as the plain one.
  text = helpers.deterministic_train_pipeline_text(
      tiny_dataset, num_steps=1, model=helpers.model_text(
          arch="cgnet", extractor="cgnet", num_classes=6, filter_scale=0.25))
  results = []
  for extra in ("", "memory_saving: true"):
    keras.utils.set_random_seed(0)
    config = helpers.pipeline_config(text.replace(
        "log_every_n_steps: 2", f"log_every_n_steps: 1 {extra}"))
    results.append(train_lib.train(config, str(tmp_path / (extra[:6] or "plain"))))
  assert results[0]["logits_loss"] == pytest.approx(results[1]["logits_loss"], rel=1e-5)


def test_trunk_layers_are_named_and_take_the_hyperparams():
  model = model_builder.build(helpers.pipeline_config(
      helpers.model_text(arch="cgnet", extractor="cgnet", num_classes=3)
      .replace("loss {", "hyperparams { regularizer { l2_regularizer "
               "{ weight: 0.001 } } batch_norm { epsilon: 0.001 } } loss {")).model)
  extractor = model.feature_extractor
  names = [layer.name for layer in extractor.layers]
  assert len(names) == len(set(names))
  assert all(name.startswith("cgnet_") for name in names)
  regularizer = model.conv_hyperparams.regularizer
  convs = [l for l in extractor.layers if isinstance(l, keras.layers.Conv2D)]
  # stem 3; each down block: conv, reduce, two FCs; each block: 1x1, two FCs.
  assert len(convs) == 3 + 2 * 4 + 22 * 3
  for layer in extractor.layers:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      assert layer.depthwise_regularizer is regularizer
    elif isinstance(layer, keras.layers.Conv2D):
      assert layer.kernel_regularizer is regularizer
    elif isinstance(layer, keras.layers.BatchNormalization):
      assert layer.epsilon == pytest.approx(0.001)
