"""Every architecture exports to ONNX and TFLite at sizes that are not multiples of 32.

ONNX used to fail on ICNet at CamVid's own 360x480 (tf2onnx's resize scales
rounded 23 * 0.5217 down to 11 rows); the exports must answer as the
SavedModel does at such sizes.
"""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.export import onnx_format
from fast_seg.export import runtimes
from fast_seg.export import tflite_format
from tests import helpers


def _check(model, shape, tmp_path, formats):
  images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  expected = helpers.save_serving_model(model, tmp_path / "saved_model", shape,
                                       "probabilities")(images)
  assert expected.shape[:3] == shape[:3]
  if "onnx" in formats:
    onnx_format.convert(str(tmp_path / "saved_model"), str(tmp_path / "m.onnx"))
    np.testing.assert_allclose(runtimes.run_once(str(tmp_path / "m.onnx"), images),
                               expected, atol=1e-4)
  if "tflite" in formats:
    tflite_format.convert(str(tmp_path / "saved_model"), str(tmp_path / "m.tflite"))
    np.testing.assert_allclose(runtimes.run_once(str(tmp_path / "m.tflite"), images),
                               expected, atol=1e-4)


def test_icnet_at_camvid_size_exports_to_onnx(tmp_path):
  tf.keras.utils.set_random_seed(0)
  model = model_builder.build(helpers.model_config(num_classes=11, filter_scale=0.25))
  _check(model, (1, 360, 480, 3), tmp_path, ("onnx",))


@pytest.mark.parametrize("arch, extractor, output_stride", [
    ("icnet", "mobilenet_v2", 8),
    ("pspnet", "mobilenet_v2", 8),
    ("deeplab_v3_plus", "mobilenet_v2", 16),
    ("mobile_unet", "mobilenet_v1", 32),
    ("dilated_fcn", "mobilenet_v1", 8),
    ("fpn", "mobilenet_v2", 32),
])
def test_every_architecture_exports_at_an_odd_size(arch, extractor, output_stride, tmp_path):
  tf.keras.utils.set_random_seed(1)
  model = model_builder.build(helpers.model_config(
      arch=arch, extractor=extractor, num_classes=3, filter_scale=0.25,
      output_stride=output_stride))
  _check(model, (1, 90, 122, 3), tmp_path, ("onnx", "tflite"))
