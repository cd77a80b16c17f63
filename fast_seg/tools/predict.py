"""Runs an exported model on images or a video; writes label maps and overlays.

Behind predict.py. The model is an export dir, a SavedModel, a frozen graph
(.pb), a .tflite or an .onnx file, opened by export/runtimes.py; every
runtime is fed by the same pre- and post-processing here, so they differ
only in how they run a batch.

For each image: `<name>_labels.png` (class ids, the image's size, cropped
rows 255) and `<name>_overlay.png` (colours blended over the image, a legend
below). A video (read and written by utils/video_io.py with imageio's ffmpeg
plugin, the optional [video] extra) streams into `<video>_overlay.mp4` at its
own frame rate, plus a short GIF preview, or into those PNG pairs per frame
(--video_output).
"""

import collections
import glob
import os
import statistics
import time

import numpy as np
from PIL import Image

from fast_seg.core import model as core_model
from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.utils import config_util
from fast_seg.utils import image_files
from fast_seg.utils import progress
from fast_seg.utils import video_io
from fast_seg.utils import visualization


def open_predictor(path, num_threads=2):
  """The opened model (runtimes.open_model) of --model, with a batch axis."""
  return runtimes.with_batch_axis(runtimes.open_model(path, num_threads))


def model_home(path):
  """The folder whose dataset_info.json / pipeline.config go with a model."""
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, serving.SAVED_MODEL_DIR)):
    return path
  return os.path.dirname(path)


# ----------------------------------------------------------------------------
# Inputs.


def list_inputs(spec):
  """('video', path) or ('images', sorted paths) for a dir, glob or video."""
  if os.path.isdir(spec):
    paths = sorted(os.path.join(spec, name) for name in os.listdir(spec)
                   if name.lower().endswith(standard_fields.IMAGE_EXTENSIONS))
  elif (spec.lower().endswith(video_io.VIDEO_EXTENSIONS)
        and os.path.isfile(spec)):
    return "video", spec
  else:
    paths = sorted(p for p in glob.glob(spec)
                   if os.path.isfile(p) and p.lower().endswith(standard_fields.IMAGE_EXTENSIONS))
  if not paths:
    raise ValueError(f"--input {spec}: no images ({', '.join(standard_fields.IMAGE_EXTENSIONS)})"
                     " in this directory or glob, and not a video file")
  return "images", paths


def _images(paths):
  """(name, image) of each path; an undecodable file comes as (name,
  ValueError naming the file), so the caller can report it and go on."""
  for path in paths:
    name = os.path.splitext(os.path.basename(path))[0]
    try:
      yield name, image_files.read_rgb(path)
    except ValueError as e:
      yield name, e


def read_inputs(spec):
  """(name, RGB uint8 image or ValueError) of every image or frame, lazily.

  The listing and the video (imageio present, file readable) are checked
  now, before any model loads.
  """
  kind, source = list_inputs(spec)
  if kind == "video":
    return video_io.Video(source).frames()
  return _images(source)


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
    prediction: the model's output for one image: int labels [h, w] (or
      [h, w, 1], the TF1 contract), float probabilities [h, w, C] (arg-maxed here; a binary model's
      [h, w, 1] sigmoid map is thresholded) or uint8 colours [h, w, 3].
    image_shape: (H, W) of the original, uncropped image.
    crop: (top, bottom) rows removed before the model.
    threshold: foreground probability of a binary probability map.

  Returns:
    (labels uint8 [H, W] with cropped rows standard_fields.IGNORE_LABEL, or None for a
    colours model; colours uint8 [H, W, 3] or None).
  """
  top, bottom = crop or (0, 0)
  size = (image_shape[0] - top - bottom, image_shape[1])
  padding = ((top, bottom), (0, 0))
  if (prediction.ndim == 3 and prediction.dtype == np.uint8
      and prediction.shape[-1] == 3):
    colours = _resize_nearest(prediction, size)
    return None, np.pad(colours, padding + ((0, 0),))
  if prediction.ndim == 3 and prediction.dtype.kind in "iu":
    prediction = prediction[..., 0]  # --contract tf1: [h, w, 1] labels
  elif prediction.ndim == 3 and prediction.shape[-1] == 1:
    prediction = (prediction[..., 0] > threshold).astype(np.uint8)
  elif prediction.ndim == 3:
    prediction = np.argmax(prediction, axis=-1)
  if prediction.max(initial=0) > 255 or prediction.min(initial=0) < 0:
    raise ValueError("label ids outside 0..255 do not fit a label PNG")
  labels = _resize_nearest(prediction.astype(np.uint8), size)
  return np.pad(labels, padding, constant_values=standard_fields.IGNORE_LABEL), None


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
    ignored = labels == standard_fields.IGNORE_LABEL
    if palette is None:
      palette = visualization.default_palette(
          int(labels[~ignored].max(initial=0)) + 1)
    colours = visualization.colorize(labels, palette).numpy()
  else:
    top, bottom = crop or (0, 0)
    ignored = np.zeros(image.shape[:2], bool)
    ignored[:top] = ignored[image.shape[0] - bottom:] = True
  return visualization.blend(image, colours, alpha, keep=ignored).numpy()


def with_legend(blended, labels, palette, names):
  """The overlay with a legend of the classes it shows below it."""
  shown = labels[labels != standard_fields.IGNORE_LABEL]
  if palette is None:  # overlay()'s default: class i has the same colour for any size
    palette = visualization.default_palette(int(shown.max(initial=0)) + 1)
  return visualization.annotate(
      blended, [], visualization.legend_entries([shown], palette, names))


# ----------------------------------------------------------------------------
# Outputs.

VIDEO_OUTPUTS = ("mp4", "gif", "frames")
# More inputs than this: a progress bar instead of a line per input.
PROGRESS_MIN_INPUTS = 50


def video_outputs(text, seconds):
  """--video_output -> what to write for a clip of `seconds`: a tuple of
  VIDEO_OUTPUTS; 'auto' is the mp4, plus the GIF when the clip fits in one."""
  names = [name.strip() for name in text.split(",") if name.strip()]
  if names == ["auto"]:
    return ("mp4", "gif") if seconds <= video_io.GIF_MAX_SECONDS else ("mp4",)
  if names == ["none"]:
    return ()
  if not names or not set(names) <= set(VIDEO_OUTPUTS):
    raise ValueError("--video_output must be auto, none or a comma list of "
                     f"{', '.join(VIDEO_OUTPUTS)}; got {text!r}")
  return tuple(dict.fromkeys(names))


# How the outputs are drawn: rows cropped before the model, the binary
# threshold, the overlay's opacity, and load_legend's palette and names.
_Drawing = collections.namedtuple(
    "_Drawing", ["crop", "threshold", "alpha", "palette", "class_names"])


class _Outputs:
  """Where each predicted image or frame goes: its PNG pair, the mp4, the GIF.

  Frames stream through: each is encoded as soon as it is drawn, so memory
  does not grow with the video (the GIF's capped frames aside).
  """

  def __init__(self, output_dir, kinds, stem=None, fps=None):
    os.makedirs(output_dir, exist_ok=True)
    self._dir, self.pngs = output_dir, "frames" in kinds
    self.paths, self._videos = [], []
    for kind, writer in (("mp4", video_io.Mp4Writer),
                         ("gif", video_io.GifWriter)):
      if kind in kinds:
        self.paths.append(os.path.join(output_dir, f"{stem}_overlay.{kind}"))
        self._videos.append(writer(self.paths[-1], fps))

  def add(self, name, image, prediction, drawing):
    labels, colours = postprocess(prediction, image.shape[:2], drawing.crop,
                                  drawing.threshold)
    blended = overlay(image, labels, colours, drawing.palette, drawing.alpha,
                      drawing.crop)
    for video in self._videos:
      video.add(blended)
    if not self.pngs:
      return
    if labels is not None:
      Image.fromarray(labels).save(os.path.join(self._dir, f"{name}_labels.png"))
      blended = with_legend(blended, labels, drawing.palette,
                            drawing.class_names)
    Image.fromarray(blended).save(os.path.join(self._dir, f"{name}_overlay.png"))

  def close(self):
    for video in self._videos:
      video.close()


# ----------------------------------------------------------------------------


def _check_options(alpha, threshold, on_error, video_output, fps, max_frames):
  """ValueErrors naming predict.py's flags for values out of range, raised
  before anything is read or loaded."""
  if on_error not in ("skip", "fail"):
    raise ValueError(f"--on_error must be skip or fail, got {on_error!r}")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"--overlay_alpha must be in 0..1, got {alpha}")
  if not 0.0 < threshold < 1.0:
    raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
  video_outputs(video_output, 0.0)
  if fps is not None and not fps > 0:
    raise ValueError(f"--fps must be > 0, got {fps}")
  if max_frames < 0:
    raise ValueError(f"--max_frames must be >= 0 (0: all), got {max_frames}")


def _timed_run(predictor, image, crop, size, warm_up):
  """(the model's output for `image`, milliseconds of the run alone)."""
  batch = preprocess(crop_rows(image, crop), size, predictor.input_shape[0],
                     predictor.input_dtype)
  if warm_up:
    predictor(batch)  # Warm-up: tracing and allocation are not latency.
  start = time.perf_counter()
  prediction = predictor(batch)[0]
  return prediction, (time.perf_counter() - start) * 1000.0


# What predict() was asked for, handed to the loop in one piece.
_Options = collections.namedtuple(
    "_Options", ["model", "palette_path", "crop", "size", "threshold", "alpha",
                 "on_error"])


def _run_all(items, predictor, outputs, options, log, bar):
  """Predicts each (name, image or problem) of `items` into `outputs`.

  Returns (names, model latencies in ms, skipped: one message each).
  """
  names, latencies, skipped, drawing = [], [], [], None
  for name, image in items:
    if isinstance(image, Exception):
      if options.on_error == "fail":
        raise image
      log(f"{name}: skipped, {image}")
      skipped.append(str(image))
      continue
    prediction, latency = _timed_run(predictor, image, options.crop,
                                     options.size, warm_up=not latencies)
    latencies.append(latency)
    if drawing is None:  # Probabilities tell the number of classes to check.
      num_classes = prediction.shape[-1] if prediction.dtype.kind == "f" else None
      drawing = _Drawing(options.crop, options.threshold, options.alpha,
                         *load_legend(model_home(options.model),
                                      options.palette_path, num_classes))
    outputs.add(name, image, prediction, drawing)
    names.append(name)
    if bar:
      bar.update(len(names) + len(skipped))
    else:
      log(f"{name}: {latency:.1f} ms")
  return names, latencies, skipped


def _summary(inputs, unit, names, latencies, num_skipped, seconds):
  """The closing line; ValueError when no input could be predicted.

  Model latency (median, p90: the tail a live system must budget for) and
  end-to-end frames a second, reading, drawing and writing included (what
  a video actually runs at; the warm-up run counts too).
  """
  if not names:
    raise ValueError(f"--input {inputs}: no readable {unit}"
                     + (f"; {num_skipped} skipped" if num_skipped else ""))
  mean = statistics.mean(latencies)
  return (f"{len(names)} {unit}s, latency mean {mean:.1f} ms, median "
          f"{np.median(latencies):.1f} ms, p90 {np.percentile(latencies, 90):.1f}"
          f" ms ({1000.0 / mean:.1f} fps for the model alone); end to end "
          f"{len(names) / seconds:.1f} fps ({seconds:.1f} s)"
          + (f"; {num_skipped} skipped (unreadable)" if num_skipped else ""))


def _open_outputs(source, video, output_dir, video_output, fps, max_frames):
  """(items to predict, their number, _Outputs) for images or a video."""
  if video is None:
    paths = source[:max_frames or None]
    return _images(paths), len(paths), _Outputs(output_dir, ("frames",))
  fps = fps or video.fps
  if not fps > 0:
    raise ValueError(f"{video.path}: the video has no frame rate; give --fps")
  total = min(video.packets, max_frames or video.packets)
  kinds = video_outputs(video_output, video.seconds)
  return (video.frames(max_frames), total,
          _Outputs(output_dir, kinds, video.stem, fps))


def _undecodable(video, on_error, log):
  """[The message on the frames ffmpeg dropped as undecodable], or []."""
  if video is None or not video.undecodable:
    return []
  message = (f"{video.path}: {video.undecodable} of {video.packets} frames "
             "could not be decoded (corrupt?)")
  if on_error == "fail":
    raise ValueError(message)
  log(f"{message}, skipped")
  return [message]


def predict(model, inputs, output_dir, crop=None, resize=None, alpha=0.5,
            palette_path=None, num_threads=2, threshold=0.5, on_error="skip",
            log=print, video_output="auto", fps=None, max_frames=0):
  """Predicts every image or frame of `inputs` with `model`; writes overlays.

  Args:
    model: export dir, SavedModel dir, frozen .pb, .tflite or .onnx.
    inputs: a directory of images, a glob or a video file.
    output_dir: where `<name>_labels.png` and `<name>_overlay.png` go, and a
      video's `<video>_overlay.mp4` / `.gif`.
    crop, resize, alpha, palette_path, num_threads, threshold: predict.py's
      --crop (top, bottom), --resize (H, W), --overlay_alpha, --palette,
      --num_threads and --threshold.
    on_error: an unreadable image or frame: "skip" reports it and goes on
      (listed in the result's `skipped`), "fail" stops there.
    log: where the per-image, skip and summary lines go (the progress bar
      shown instead of per-image lines past 50 inputs prints to stdout).
    video_output, fps, max_frames: --video_output (see video_outputs),
      --fps (of the written video; None: the input's) and --max_frames (0: all).

  Returns:
    dict: names (in order), latencies_ms (model run only), skipped (one
    message each), num_skipped (frames lost inside a video included),
    outputs (video files written), pngs (whether PNG pairs were), summary.
  """
  _check_options(alpha, threshold, on_error, video_output, fps, max_frames)
  kind, source = list_inputs(inputs)
  video = video_io.Video(source) if kind == "video" else None  # Checked before the model.
  predictor = open_predictor(model, num_threads)
  options = _Options(model, palette_path, crop,
                     model_size(predictor.input_shape, resize), threshold,
                     alpha, on_error)
  items, total, outputs = _open_outputs(source, video, output_dir, video_output,
                                        fps, max_frames)
  bar = (progress.bar(total, unit_name="frame" if video else "image")
         if total > PROGRESS_MIN_INPUTS else None)
  start = time.perf_counter()
  try:
    names, latencies, skipped = _run_all(items, predictor, outputs, options,
                                         log, bar)
  finally:
    items.close()
    outputs.close()
    predictor.close()
  num_skipped = len(skipped) + (video.undecodable if video else 0)
  skipped += _undecodable(video, on_error, log)
  summary = _summary(inputs, "frame" if video else "image", names, latencies,
                     num_skipped, time.perf_counter() - start)
  log(summary)
  return {"names": names, "latencies_ms": latencies, "skipped": skipped,
          "num_skipped": num_skipped, "outputs": outputs.paths,
          "pngs": outputs.pngs, "summary": summary}
