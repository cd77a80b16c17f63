"""Runs an exported model on a folder of images and writes label maps and overlays.

  python -m fast_seg.tools.predict --export_dir exported/X --input_dir photos/ \
      --output_dir predictions/

For each image: `<name>_labels.png` (class ids) and `<name>_overlay.png`
(colours blended over the image). Images are resized to the exported input
size and the labels resized back (nearest neighbour) to the image size.
Overlay colours come from --dataset_info, else the dataset_info.json that
export.py copied into the export dir, else a default palette.
"""

import os

from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.export import export_lib
from fast_seg.utils import cli
from fast_seg.utils import config_util
from fast_seg.utils import visualization

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(input_dir):
  """Sorted image paths in `input_dir` (not recursive)."""
  if not os.path.isdir(input_dir):
    raise ValueError(f"--input_dir is not a directory: {input_dir}")
  paths = sorted(os.path.join(input_dir, name) for name in os.listdir(input_dir)
                 if name.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {input_dir}")
  return paths


def load_palette(config, export_dir, dataset_info_path=None):
  """The overlay palette: from `dataset_info_path`, the export's copy or default.

  Raises:
    ValueError: the dataset info's classes disagree with the exported model.
  """
  arch = config_util.get_model_config(config.model)
  path = dataset_info_path
  if not path:
    path = os.path.join(export_dir, standard_fields.DatasetInfoFields.file_name)
    if not os.path.isfile(path):
      return visualization.default_palette(arch.num_classes)
  info = dataset_info.load(path)
  dataset_info.check_model(info, arch.num_classes, arch.ignore_label, path,
                           "model." + config.model.WhichOneof("model"))
  return dataset_info.palette(info)


def predict_folder(export_dir, input_dir, output_dir, alpha=0.5,
                   dataset_info_path=None):
  """Predicts every image of `input_dir` with the SavedModel in `export_dir`.

  Args:
    export_dir: output folder of export.py.
    input_dir: folder of images.
    output_dir: where label maps and overlays go.
    alpha: opacity of the class colours in the overlays.
    dataset_info_path: dataset_info.json whose palette colours the overlays;
      None: the one in `export_dir`, else a default palette.

  Returns:
    dict image path -> int32 label map at the image's size.
  """
  saved_model_dir = os.path.join(export_dir, export_lib.SAVED_MODEL_DIR)
  if not os.path.isdir(saved_model_dir):
    raise ValueError(f"no {export_lib.SAVED_MODEL_DIR}/ in {export_dir}; "
                     "run export.py first")
  config = config_util.load_pipeline_config(
      os.path.join(export_dir, config_util.PIPELINE_CONFIG_NAME))
  palette = load_palette(config, export_dir, dataset_info_path)
  serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
  batch, height, width, _ = serve.structured_input_signature[1][
      export_lib.INPUT_NAME].shape
  os.makedirs(output_dir, exist_ok=True)
  results = {}
  for path in list_images(input_dir):
    try:
      image = Image.open(path).convert("RGB")
    except OSError as e:
      raise ValueError(f"{path}: not a readable image ({e})") from None
    resized = np.asarray(image.resize((width, height), Image.BILINEAR))
    inputs = np.repeat(resized[None], batch, axis=0)
    labels = serve(**{export_lib.INPUT_NAME: tf.constant(inputs)})[
        export_lib.OUTPUT_NAME][0].numpy()
    labels = np.asarray(Image.fromarray(labels.astype(np.uint8)).resize(
        image.size, Image.NEAREST), np.int32)
    stem = os.path.splitext(os.path.basename(path))[0]
    Image.fromarray(labels.astype(np.uint8)).save(
        os.path.join(output_dir, f"{stem}_labels.png"))
    blended = visualization.overlay(np.asarray(image), labels, palette, alpha)
    Image.fromarray(blended.numpy()).save(
        os.path.join(output_dir, f"{stem}_overlay.png"))
    results[path] = labels
  return results


flags.DEFINE_string("export_dir", None, "Output folder of export.py.")
flags.DEFINE_string("input_dir", None, "Folder of images.")
flags.DEFINE_string("output_dir", None, "Where label maps and overlays go.")
flags.DEFINE_float("alpha", 0.5, "Opacity of the colours in the overlay.")
flags.DEFINE_string("dataset_info", None,
                    "dataset_info.json whose palette colours the overlays; "
                    "default: the one in --export_dir, else a default palette.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  for name in ("export_dir", "input_dir", "output_dir"):
    if not getattr(FLAGS, name):
      raise ValueError(f"--{name} is required")
  results = predict_folder(FLAGS.export_dir, FLAGS.input_dir, FLAGS.output_dir,
                           FLAGS.alpha, FLAGS.dataset_info)
  print(f"Wrote {len(results)} label maps and overlays to {FLAGS.output_dir}")


if __name__ == "__main__":
  cli.run(main)
