"""Runs an exported model on images or a video; writes label maps and overlays.

Behind predict.py. The model is an export dir, a SavedModel, a frozen graph
(.pb), a .tflite or an .onnx file: one small Predictor class per runtime, all
fed by the same pre- and post-processing here, so the runtimes differ only in
how they run a batch.

For each image or frame: `<name>_labels.png` (class ids, the image's size,
cropped rows 255) and `<name>_overlay.png` (colours blended over the image).
"""

import collections
import glob
import os
import statistics
import time

import numpy as np
from PIL import Image
import tensorflow as tf

from fast_seg.core import model as core_model
from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.export import inference_graph
from fast_seg.export import onnx_format
from fast_seg.export import serving
from fast_seg.export import tflite_format
from fast_seg.utils import config_util
from fast_seg.utils import visualization

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg",
                    ".mpeg")
IGNORE_LABEL = 255
MODEL_SUFFIXES = (".pb", ".tflite", ".onnx")


# ----------------------------------------------------------------------------
# Predictors: input_shape (N, H, W, 3; None where dynamic), input_dtype (numpy)
# and run(batch) -> the model's `predictions` as a numpy array.


class SavedModelPredictor:
  """The serving signature of a SavedModel."""

  def __init__(self, path):
    self._serve = inference_graph.load_saved_model(path)
    spec = self._serve.structured_input_signature[1][serving.INPUT_NAME]
    self.input_shape = tuple(spec.shape)
    self.input_dtype = spec.dtype.as_numpy_dtype

  def run(self, batch):
    outputs = self._serve(**{serving.INPUT_NAME: tf.constant(batch)})
    return outputs[serving.OUTPUT_NAME].numpy()


class FrozenGraphPredictor:
  """frozen_inference_graph.pb, `inputs:0` -> `predictions:0`, in TF2."""

  def __init__(self, path):
    with open(path, "rb") as f:
      graph_def = tf.compat.v1.GraphDef.FromString(f.read())
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    try:
      inputs = wrapped.graph.get_tensor_by_name(serving.INPUT_TENSOR)
      outputs = wrapped.graph.get_tensor_by_name(serving.OUTPUT_TENSOR)
    except KeyError:
      raise ValueError(f"{path}: no {serving.INPUT_TENSOR} / "
                       f"{serving.OUTPUT_TENSOR} tensors") from None
    self._run = wrapped.prune(inputs, outputs)
    self.input_shape = tuple(inputs.shape)
    self.input_dtype = inputs.dtype.as_numpy_dtype

  def run(self, batch):
    return self._run(tf.constant(batch)).numpy()


class TFLitePredictor:
  """A .tflite model in the LiteRT interpreter (XNNPACK on CPU by default)."""

  def __init__(self, path, num_threads=2):
    self._model = tflite_format.Model(path, num_threads)
    self.input_shape = self._model.input_shape
    self.input_dtype = self._model.input_dtype

  def run(self, batch):
    return self._model(batch)


class OnnxPredictor:
  """An .onnx model in onnxruntime on the CPU."""

  def __init__(self, path, num_threads=2):
    self._model = onnx_format.Model(path, num_threads)
    self.input_shape = self._model.input_shape
    self.input_dtype = self._model.input_dtype

  def run(self, batch):
    return self._model(batch)


def open_predictor(path, num_threads=2):
  """The Predictor for an export dir, SavedModel dir, .pb, .tflite or .onnx."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"--model not found: {path}")
  if os.path.isdir(path):
    nested = os.path.join(path, serving.SAVED_MODEL_DIR)
    if os.path.isdir(nested):
      return SavedModelPredictor(nested)
    if os.path.isfile(os.path.join(path, serving.SAVED_MODEL_FILE)):
      return SavedModelPredictor(path)
    raise ValueError(f"--model {path}: neither an export dir (with "
                     f"{serving.SAVED_MODEL_DIR}/) nor a SavedModel")
  suffix = os.path.splitext(path)[1].lower()
  if suffix == ".pb":
    return FrozenGraphPredictor(path)
  if suffix == ".tflite":
    return TFLitePredictor(path, num_threads)
  if suffix == ".onnx":
    return OnnxPredictor(path, num_threads)
  raise ValueError(f"--model {path}: expected a directory or a file ending in "
                   f"{', '.join(MODEL_SUFFIXES)}")


def model_home(path):
  """The folder whose dataset_info.json / pipeline.config go with a model."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, serving.SAVED_MODEL_DIR)):
    return path
  return os.path.dirname(path)


# ----------------------------------------------------------------------------
# Inputs.


def _read_image(path):
  try:
    return np.asarray(Image.open(path).convert("RGB"))
  except OSError as e:
    raise ValueError(f"{path}: not a readable image ({e})") from None


def _read_video(path):
  """(name, RGB frame) of every frame of a video, via OpenCV."""
  try:
    # Imported here: OpenCV is optional, only videos need it.
    import cv2
  except ImportError:
    raise ValueError(f"reading the video {path} needs OpenCV: "
                     "pip install opencv-python") from None
  capture = cv2.VideoCapture(path)
  if not capture.isOpened():
    raise ValueError(f"{path}: OpenCV cannot open this video")
  stem = os.path.splitext(os.path.basename(path))[0]

  def frames():
    index = 0
    try:
      while True:
        ok, frame = capture.read()
        if not ok:
          return
        yield f"{stem}_{index:06d}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        index += 1
    finally:
      capture.release()

  return frames()


def list_inputs(spec):
  """('video', path) or ('images', sorted paths) for a dir, glob or video."""
  if os.path.isdir(spec):
    paths = sorted(os.path.join(spec, name) for name in os.listdir(spec)
                   if name.lower().endswith(IMAGE_EXTENSIONS))
  elif spec.lower().endswith(VIDEO_EXTENSIONS) and os.path.isfile(spec):
    return "video", spec
  else:
    paths = sorted(p for p in glob.glob(spec)
                   if os.path.isfile(p) and p.lower().endswith(IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f"--input {spec}: no images ({', '.join(IMAGE_EXTENSIONS)})"
                     " in this directory or glob, and not a video file")
  return "images", paths


def read_inputs(spec):
  """(name, RGB uint8 image) of every image or frame of `spec`, lazily.

  The listing and the video reader are checked now, before any model loads.
  An image file that cannot be decoded comes as (name, ValueError naming the
  file), so the caller can report it and go on with the next one.
  """
  kind, source = list_inputs(spec)
  if kind == "video":
    return _read_video(source)
  return ((os.path.splitext(os.path.basename(path))[0], _image_or_problem(path))
          for path in source)


def _image_or_problem(path):
  try:
    return _read_image(path)
  except ValueError as e:
    return e


# ----------------------------------------------------------------------------
# Pre- and post-processing, shared by every runtime.


def parse_crop(text):
  """--crop -> (rows removed at the top, rows removed at the bottom).

  'top,bottom' counts removed rows; the road project's 'start,-stop' form
  (a slice, '150,-100': rows 150 up to 100 from the bottom) gives the same
  crop, so both '150,100' and '150,-100' remove 150 rows above and 100 below.
  """
  try:
    top, bottom = (int(v) for v in text.split(","))
  except ValueError:
    top = -1
  if top < 0:
    raise ValueError(f"--crop must be top,bottom (rows removed; or the road "
                     f"project's start,-stop), got {text!r}")
  return top, abs(bottom)


def crop_rows(image, crop):
  """Removes crop = (top, bottom) rows, as the KITTI road models were fed."""
  top, bottom = crop or (0, 0)
  if top + bottom >= image.shape[0]:
    raise ValueError(f"--crop {top},{bottom} removes all {image.shape[0]} rows")
  return image[top:image.shape[0] - bottom]


def model_size(input_shape, resize=None):
  """The (H, W) to resize to: the model's, or --resize for a dynamic one."""
  fixed = tuple(input_shape[1:3])
  if None not in fixed:
    if resize and tuple(resize) != fixed:
      raise ValueError(f"--resize {resize[0]},{resize[1]} does not match the "
                       f"model's fixed input size {fixed[0]},{fixed[1]}")
    return fixed
  return tuple(resize) if resize else None


def preprocess(image, size, batch_size, dtype):
  """The model's input batch: the image resized (bilinear), repeated N times."""
  if size and tuple(image.shape[:2]) != tuple(size):
    image = np.asarray(Image.fromarray(image).resize(
        (size[1], size[0]), Image.BILINEAR))
  return np.repeat(image[None], batch_size or 1, axis=0).astype(dtype)


def _resize_nearest(array, size):
  """Nearest-neighbour resize of [H, W] ids or [H, W, 3] colours to size."""
  if tuple(array.shape[:2]) == tuple(size):
    return array
  return np.asarray(Image.fromarray(array).resize(
      (size[1], size[0]), Image.NEAREST))


def postprocess(prediction, image_shape, crop=None, threshold=0.5):
  """One image's output at the original image size.

  Args:
    prediction: the model's output for one image: int labels [h, w],
      float probabilities [h, w, C] (arg-maxed here; a binary model's
      [h, w, 1] sigmoid map is thresholded) or uint8 colours [h, w, 3].
    image_shape: (H, W) of the original, uncropped image.
    crop: (top, bottom) rows removed before the model.
    threshold: foreground probability of a binary probability map.

  Returns:
    (labels uint8 [H, W] with cropped rows IGNORE_LABEL, or None for a
    colours model; colours uint8 [H, W, 3] or None).
  """
  top, bottom = crop or (0, 0)
  size = (image_shape[0] - top - bottom, image_shape[1])
  padding = ((top, bottom), (0, 0))
  if prediction.ndim == 3 and prediction.dtype == np.uint8:
    colours = _resize_nearest(prediction, size)
    return None, np.pad(colours, padding + ((0, 0),))
  if prediction.ndim == 3 and prediction.shape[-1] == 1:
    prediction = (prediction[..., 0] > threshold).astype(np.uint8)
  elif prediction.ndim == 3:
    prediction = np.argmax(prediction, axis=-1)
  if prediction.max(initial=0) > 255 or prediction.min(initial=0) < 0:
    raise ValueError("label ids outside 0..255 do not fit a label PNG")
  labels = _resize_nearest(prediction.astype(np.uint8), size)
  return np.pad(labels, padding, constant_values=IGNORE_LABEL), None


def load_palette(home, dataset_info_path=None, num_classes=None):
  """The palette of load_legend (None: the default palette)."""
  return load_legend(home, dataset_info_path, num_classes)[0]


def load_legend(home, dataset_info_path=None, num_classes=None):
  """(palette, class names) for the overlays from --palette or `home`'s
  dataset_info.json, or (None, None).

  None means the default palette (and class_<id> names). When `home` has the export's
  pipeline.config (or the model reports num_classes), the dataset info is
  checked against it.

  Raises:
    ValueError: the dataset info's classes disagree with the model.
  """
  path = dataset_info_path
  if not path:
    path = os.path.join(home, standard_fields.DatasetInfoFields.file_name)
    if not os.path.isfile(path):
      return None, None
  info = dataset_info.load(path)
  names = list(info[standard_fields.DatasetInfoFields.class_names])
  config_path = os.path.join(home, config_util.PIPELINE_CONFIG_NAME)
  if os.path.isfile(config_path):
    config = config_util.load_pipeline_config(config_path)
    arch = config_util.get_model_config(config.model)
    dataset_info.check_model(info, arch.num_classes, arch.ignore_label, path,
                             "model." + config.model.WhichOneof("model"))
    if arch.HasField("binary_output"):
      # Output ids 0 / 1: background and the (first) foreground colour.
      foreground = core_model.BinaryOutput.from_proto(
          arch.binary_output).foreground_ids(arch.num_classes)[0]
      return (dataset_info.palette(info)[[0, foreground]],
              [names[0], names[foreground]])
  elif num_classes and num_classes > 1 and num_classes != info[
      standard_fields.DatasetInfoFields.num_classes]:
    raise ValueError(f"the model has {num_classes} classes but {path} "
                     f"describes "
                     f"{info[standard_fields.DatasetInfoFields.num_classes]}")
  return dataset_info.palette(info), names


def overlay(image, labels, colours, palette, alpha, crop=None):
  """Class colours blended over `image`; ignored (cropped) pixels as they are.

  Args:
    image: RGB uint8 [H, W, 3], the original image.
    labels: uint8 [H, W] from postprocess, or None for a colours model.
    colours: uint8 [H, W, 3] from postprocess, or None for a labels model.
    palette: [C, 3] uint8, or None for the default palette.
    alpha: opacity of the colours.
    crop: (top, bottom) rows that were not predicted.
  """
  if colours is None:
    ignored = labels == IGNORE_LABEL
    if palette is None:
      palette = visualization.default_palette(
          int(labels[~ignored].max(initial=0)) + 1)
    colours = visualization.colorize(labels, palette).numpy()
  else:
    top, bottom = crop or (0, 0)
    ignored = np.zeros(image.shape[:2], bool)
    ignored[:top] = ignored[image.shape[0] - bottom:] = True
  blended = (1.0 - alpha) * image + alpha * colours.astype(np.float32)
  blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
  return np.where(ignored[..., None], image, blended)


def with_legend(blended, labels, palette, names):
  """The overlay with a legend of the classes it shows below it."""
  shown = labels[labels != IGNORE_LABEL]
  if palette is None:  # overlay()'s default: class i has the same colour for any size
    palette = visualization.default_palette(int(shown.max(initial=0)) + 1)
  return visualization.annotate(
      blended, [], visualization.legend_entries([shown], palette, names))


# ----------------------------------------------------------------------------


def _check_options(alpha, threshold, on_error):
  """ValueErrors naming predict.py's flags for values out of range."""
  if on_error not in ("skip", "fail"):
    raise ValueError(f"--on_error must be skip or fail, got {on_error!r}")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"--overlay_alpha must be in 0..1, got {alpha}")
  if not 0.0 < threshold < 1.0:
    raise ValueError(f"--threshold must be in (0, 1), got {threshold}")


def _timed_run(predictor, image, crop, size, warm_up):
  """(the model's output for `image`, milliseconds of the run alone)."""
  batch = preprocess(crop_rows(image, crop), size, predictor.input_shape[0],
                     predictor.input_dtype)
  if warm_up:
    predictor.run(batch)  # Warm-up: tracing and allocation are not latency.
  start = time.perf_counter()
  prediction = predictor.run(batch)[0]
  return prediction, (time.perf_counter() - start) * 1000.0


# How the outputs are drawn: rows cropped before the model, the binary
# threshold, the overlay's opacity, and load_legend's palette and names.
_Drawing = collections.namedtuple(
    "_Drawing", ["crop", "threshold", "alpha", "palette", "class_names"])


def _write_outputs(output_dir, name, image, prediction, drawing):
  """`<name>_labels.png` (not for a colours model) and `<name>_overlay.png`."""
  labels, colours = postprocess(prediction, image.shape[:2], drawing.crop,
                                drawing.threshold)
  if labels is not None:
    Image.fromarray(labels).save(os.path.join(output_dir, f"{name}_labels.png"))
  blended = overlay(image, labels, colours, drawing.palette, drawing.alpha,
                    drawing.crop)
  if labels is not None:
    blended = with_legend(blended, labels, drawing.palette,
                          drawing.class_names)
  Image.fromarray(blended).save(os.path.join(output_dir, f"{name}_overlay.png"))


def _summary(inputs, names, latencies, skipped):
  """The closing line; ValueError when no input could be predicted."""
  if not names:
    if skipped:
      raise ValueError(f"--input {inputs}: no readable image; "
                       + "; ".join(skipped[:3]))
    raise ValueError(f"--input {inputs}: the video has no frames")
  mean = statistics.mean(latencies)
  return (f"{len(names)} images, latency mean {mean:.1f} ms, median "
          f"{statistics.median(latencies):.1f} ms, {1000.0 / mean:.1f} fps"
          + (f"; {len(skipped)} skipped (unreadable)" if skipped else ""))


def predict(model, inputs, output_dir, crop=None, resize=None, alpha=0.5,
            palette_path=None, num_threads=2, threshold=0.5, on_error="skip",
            log=print):
  """Predicts every image or frame of `inputs` with `model`; writes PNGs.

  Args:
    model: export dir, SavedModel dir, frozen .pb, .tflite or .onnx.
    inputs: a directory of images, a glob or a video file.
    output_dir: where `<name>_labels.png` and `<name>_overlay.png` go.
    crop: (top, bottom) rows removed before the model; their labels are 255.
    resize: (H, W) for a model without a fixed input size.
    alpha: opacity of the class colours in the overlays, in 0..1.
    palette_path: dataset_info.json whose palette colours the overlays;
      None: the one beside the model, else a default palette.
    num_threads: CPU threads of the TFLite and ONNX runtimes.
    threshold: foreground probability, in (0, 1), for a binary model
      exported with --output probabilities.
    on_error: an unreadable image among the inputs: "skip" reports it and
      goes on (listed in the result's `skipped`), "fail" stops there.
    log: where the per-image and summary lines go.

  Returns:
    dict: names (in order), latencies_ms (model run only), skipped (one
    "file: reason" each), summary (a line).
  """
  _check_options(alpha, threshold, on_error)
  images = read_inputs(inputs)
  predictor = open_predictor(model, num_threads)
  size = model_size(predictor.input_shape, resize)
  os.makedirs(output_dir, exist_ok=True)
  names, latencies, skipped, drawing = [], [], [], None
  for name, image in images:
    if isinstance(image, Exception):
      if on_error == "fail":
        raise image
      log(f"{name}: skipped, {image}")
      skipped.append(str(image))
      continue
    prediction, latency = _timed_run(predictor, image, crop, size,
                                     warm_up=not latencies)
    latencies.append(latency)
    if drawing is None:  # Probabilities tell the number of classes to check.
      num_classes = prediction.shape[-1] if prediction.dtype.kind == "f" else None
      drawing = _Drawing(crop, threshold, alpha, *load_legend(
          model_home(model), palette_path, num_classes))
    _write_outputs(output_dir, name, image, prediction, drawing)
    names.append(name)
    log(f"{name}: {latency:.1f} ms")
  summary = _summary(inputs, names, latencies, skipped)
  log(summary)
  return {"names": names, "latencies_ms": latencies, "skipped": skipped,
          "summary": summary}
