"""Test-time inference: identities that hold by construction, and averaging by hand."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.builders import inference_options_builder
from fast_seg.core import inference
from fast_seg.core import model as core_model
from fast_seg.core import standard_fields as fields
from fast_seg.protos import eval_pb2
from google.protobuf import text_format
from tests import helpers

LABELS = fields.PredictionFields.labels
PROBABILITIES = fields.PredictionFields.probabilities


class FullResolutionModel(core_model.SegmentationModel):
  """Logits at the input resolution: a k x k conv (stride 1) and a 1x1 classifier.

  With k = 1 every pixel's logits depend on that pixel alone, so any window
  layout must give the whole-image logits; with a mirror-symmetric kernel
  the model commutes with a horizontal flip.
  """

  def __init__(self, base, kernel_size=1, binary_output=None):
    self.kernel_size = kernel_size
    super().__init__(base.num_classes, base.ignore_label, base.feature_extractor,
                     base.conv_hyperparams, base.loss_fn, "full_resolution",
                     binary_output=binary_output)

  def _build_heads(self, preprocessed_images):
    hidden = keras.layers.Conv2D(16, self.kernel_size, padding="same",
                                 activation="tanh", name="hidden")(preprocessed_images)
    return hidden, {fields.PredictionFields.logits: self.classifier("classifier")(hidden)}


def _full_resolution_model(kernel_size=1, binary=False, seed=0):
  tf.keras.utils.set_random_seed(seed)
  base = model_builder.build(helpers.model_config(arch="deeplab_v3_plus",
                                                  num_classes=5, filter_scale=0.25))
  binary_output = (core_model.BinaryOutput(foreground_class_ids=(), threshold=0.5)
                   if binary else None)
  return FullResolutionModel(base, kernel_size, binary_output)


def _image(height, width, seed=1):
  return tf.constant(np.random.default_rng(seed).integers(
      0, 256, (1, height, width, 3)), tf.uint8)


def _options(scales=(1.0,), flip=False, window=None):
  return inference.TestTimeOptions(scales=tuple(scales), flip=flip,
                                   window=inference.SlidingWindow(*window) if window else None)


@pytest.mark.parametrize("length, window, stride, expected", [
    (10, 4, 3, [0, 3, 6]),
    (11, 4, 3, [0, 3, 6, 7]),   # the last window moves back to end at the border
    (4, 4, 1, [0]),
    (3, 4, 2, [0]),             # shorter than the window: one (padded) window
    (9, 3, 3, [0, 3, 6]),
])
def test_window_origins(length, window, stride, expected):
  assert inference.window_origins(length, window, stride).numpy().tolist() == expected


@pytest.mark.parametrize("length, window, stride", [(37, 16, 5), (53, 20, 20), (64, 64, 7)])
def test_windows_cover_every_pixel(length, window, stride):
  covered = np.zeros(max(length, window), int)
  for start in inference.window_origins(length, window, stride).numpy():
    covered[start:start + window] += 1
  assert covered[:length].min() >= 1


@pytest.mark.parametrize("window", [(16, 16, 8), (20, 24, 7), (37, 53, 5), (48, 64, 30)])
def test_pointwise_model_any_window_layout_equals_whole_image(window):
  model = _full_resolution_model(kernel_size=1)
  images = _image(37, 53)
  plain = inference.predict(model, images, with_probabilities=True)
  windowed = inference.predict(model, images, _options(window=window),
                               with_probabilities=True)
  np.testing.assert_array_equal(windowed[LABELS].numpy(), plain[LABELS].numpy())
  np.testing.assert_allclose(windowed[PROBABILITIES].numpy(),
                             plain[PROBABILITIES].numpy(), atol=1e-6)


def test_window_layouts_differ_for_a_model_with_context():
  """The control: with a 5x5 conv, windows see less context at their borders."""
  model = _full_resolution_model(kernel_size=5)
  images = _image(37, 53)
  plain = inference.predict(model, images, with_probabilities=True)[PROBABILITIES]
  windowed = inference.predict(model, images, _options(window=(16, 16, 8)),
                               with_probabilities=True)[PROBABILITIES]
  assert np.abs(windowed.numpy() - plain.numpy()).max() > 1e-3


@pytest.mark.parametrize("arch", ["icnet", "pspnet"])
def test_window_as_large_as_the_image_equals_whole_image(arch):
  tf.keras.utils.set_random_seed(2)
  model = model_builder.build(helpers.model_config(arch=arch, num_classes=4,
                                                   filter_scale=0.25))
  images = _image(64, 80)
  plain = inference.predict(model, images, with_probabilities=True)
  windowed = inference.predict(model, images, _options(window=(64, 80, 64)),
                               with_probabilities=True)
  np.testing.assert_array_equal(windowed[LABELS].numpy(), plain[LABELS].numpy())
  np.testing.assert_array_equal(windowed[PROBABILITIES].numpy(),
                                plain[PROBABILITIES].numpy())


def test_single_scale_equals_postprocess_bit_for_bit():
  tf.keras.utils.set_random_seed(3)
  model = model_builder.build(helpers.model_config(num_classes=4, filter_scale=0.25))
  images = _image(45, 61)
  logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
  expected = model.postprocess(logits, [45, 61])[LABELS]
  got = inference.predict(model, images, _options(scales=[1.0]))[LABELS]
  np.testing.assert_array_equal(got.numpy(), expected.numpy())


def _symmetrize_hidden_kernel(model):
  layer = model.inference_model.get_layer("hidden")
  kernel, bias = layer.get_weights()
  layer.set_weights([(kernel + kernel[:, ::-1]) / 2, bias])


def test_flip_of_a_mirror_symmetric_model_equals_no_flip():
  model = _full_resolution_model(kernel_size=3)
  _symmetrize_hidden_kernel(model)
  images = _image(33, 47)
  plain = inference.predict(model, images, with_probabilities=True)
  flipped = inference.predict(model, images, _options(flip=True),
                              with_probabilities=True)
  np.testing.assert_array_equal(flipped[LABELS].numpy(), plain[LABELS].numpy())
  np.testing.assert_allclose(flipped[PROBABILITIES].numpy(),
                             plain[PROBABILITIES].numpy(), atol=1e-6)


def test_flip_of_an_asymmetric_model_changes_the_probabilities():
  model = _full_resolution_model(kernel_size=3)
  images = _image(33, 47)
  plain = inference.predict(model, images, with_probabilities=True)[PROBABILITIES]
  flipped = inference.predict(model, images, _options(flip=True),
                              with_probabilities=True)[PROBABILITIES]
  assert np.abs(flipped.numpy() - plain.numpy()).max() > 1e-3


def _view_probabilities_by_hand(model, images, scale, mirrored):
  size = images.shape[1:3]
  view = images[:, :, ::-1] if mirrored else images
  scaled = tf.image.resize(tf.cast(view, tf.float32),
                           [round(size[0] * scale), round(size[1] * scale)])
  logits = model.inference_model(model.preprocess(scaled))
  logits = tf.image.resize(logits, size).numpy()
  probabilities = (1 / (1 + np.exp(-logits)) if model.is_binary
                   else tf.nn.softmax(logits).numpy())
  return probabilities[:, :, ::-1] if mirrored else probabilities


@pytest.mark.parametrize("binary", [False, True])
def test_multi_scale_flip_averages_the_views_probabilities(binary):
  model = _full_resolution_model(kernel_size=3, binary=binary)
  images = _image(40, 52)
  scales = (0.5, 1.0, 1.5)
  got = inference.predict(model, images, _options(scales=scales, flip=True),
                          with_probabilities=True)
  expected = np.mean([_view_probabilities_by_hand(model, images, s, m)
                      for s in scales for m in (False, True)], axis=0)
  np.testing.assert_allclose(got[PROBABILITIES].numpy(), expected, atol=1e-5)
  labels = (expected[..., 0] > 0.5) if binary else expected.argmax(-1)
  agreement = (got[LABELS].numpy() == labels).mean()
  assert agreement > 0.999


@pytest.mark.parametrize("arch, extractor, binary", [
    ("icnet", "mobilenet_v2", False),
    ("pspnet", "mobilenet_v2", False),
    ("deeplab_v3_plus", "mobilenet_v2", False),
    ("mobile_unet", "mobilenet_v1", True),
    ("dilated_fcn", "mobilenet_v1", False),
])
def test_every_architecture_runs_scales_flip_and_windows_in_a_graph(arch, extractor, binary):
  output_stride = 32 if arch == "mobile_unet" else 8
  model = model_builder.build(helpers.model_config(
      arch=arch, extractor=extractor, num_classes=3, filter_scale=0.25,
      output_stride=output_stride, extra="binary_output {}" if binary else "",
      loss="binary_cross_entropy {}" if binary else "softmax_cross_entropy {}"))
  options = _options(scales=(0.75, 1.25), flip=True, window=(32, 40, 24))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
  def run(images):
    return inference.predict(model, images, options, with_probabilities=True)

  result = run(_image(45, 61))
  channels = 1 if model.is_binary else 3
  assert result[LABELS].shape == (1, 45, 61)
  assert result[PROBABILITIES].shape == (1, 45, 61, channels)
  if not model.is_binary:
    np.testing.assert_allclose(result[PROBABILITIES].numpy().sum(-1), 1.0, atol=1e-5)


def _eval_config(text):
  return text_format.Parse(text, eval_pb2.EvalConfig())


def test_builder_reads_scales_flip_and_window():
  options = inference_options_builder.build(_eval_config(
      "scales: [0.75, 1.0, 1.25] flip: true "
      "sliding_window { height: 360 width: 480 stride: 240 }"))
  assert options.scales == (0.75, 1.0, 1.25) and options.flip
  assert options.window == inference.SlidingWindow(360, 480, 240)
  assert inference_options_builder.build(_eval_config("")).is_plain


@pytest.mark.parametrize("text, match", [
    ("scales: [1.0, -0.5]", r"eval_config.scales must be > 0"),
    ("scales: [1.0, 1.0]", r"eval_config.scales lists a scale twice"),
    ("sliding_window { height: 0 width: 10 stride: 5 }",
     r"eval_config.sliding_window.height and width must be >= 1"),
    ("sliding_window { height: 10 width: 20 stride: 11 }",
     r"eval_config.sliding_window.stride must be in 1..10"),
    ("sliding_window { height: 10 width: 20 }",
     r"eval_config.sliding_window.stride must be in 1..10"),
])
def test_builder_errors_name_the_field(text, match):
  with pytest.raises(ValueError, match=match):
    inference_options_builder.build(_eval_config(text))
