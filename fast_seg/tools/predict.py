"""Runs an exported model on images or a video; writes label maps and overlays.

Behind predict.py. The model is an export dir, a SavedModel, a frozen graph
(.pb), a .tflite or an .onnx file, opened by export/runtimes.py; every
runtime is fed by the same pre- and post-processing (predict_geometry.py),
so they differ only in how they run a batch.

For each image: `<name>_labels.png` (class ids, the image's size, cropped
rows 255) and `<name>_overlay.png` (colours blended over the image, a legend
below). A video (read and written by utils/video_io.py with imageio's ffmpeg
plugin, the optional [video] extra) streams into `<video>_overlay.mp4` at its
own frame rate, plus a short GIF preview, or into those PNG pairs per frame
(--video_output).

An image is resized to a fixed-size model's input (or letterboxed into it,
--fit; predict_geometry.FITS says why resizing is the default) and the
output resized back, so every output has the image's own size and aspect;
a line says how the inputs met the model, another where the colours come
from.
"""

import collections
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
from fast_seg.tools import predict_geometry
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
  """('video', path) or ('images', paths in natural order) for a dir, glob
  or video."""
  if (not os.path.isdir(spec) and os.path.isfile(spec)
      and spec.lower().endswith(video_io.VIDEO_EXTENSIONS)):
    return "video", spec
  paths = image_files.list_images(spec)
  if not paths:
    raise ValueError(f"--input {spec}: no images ({', '.join(image_files.IMAGE_EXTENSIONS)})"
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
# Colours.


# --palette's value for visualization.default_palette's distinct hues, with
# the class names of the dataset_info.json beside the model.
DISTINCT_PALETTE = "distinct"


def load_palette(home, dataset_info_path=None, num_classes=None):
  """The palette of load_legend (None: the default palette)."""
  return load_legend(home, dataset_info_path, num_classes)[0]


def load_legend(home, dataset_info_path=None, num_classes=None):
  """(palette, class names) for the overlays from --palette or `home`'s
  dataset_info.json, or (None, None).

  None means the default palette (and class_<id> names). When `home` has the export's
  pipeline.config (or the model reports num_classes), the dataset info is
  checked against it. `dataset_info_path` DISTINCT_PALETTE keeps the names
  but takes the default palette's hues: a dataset's own colours can be
  close (CamVid's road, pavement, fence and car are all purple-blues).

  Raises:
    ValueError: the dataset info's classes disagree with the model.
  """
  if dataset_info_path == DISTINCT_PALETTE:
    palette, names = load_legend(home, None, num_classes)
    if palette is None:
      return None, None
    return visualization.default_palette(len(palette)), names
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


def palette_source(home, dataset_info_path=None):
  """The line saying where load_legend's colours come from."""
  distinct = "a distinct hue per class"
  if dataset_info_path == DISTINCT_PALETTE:
    return f"overlay colours: {distinct} (--palette {DISTINCT_PALETTE})"
  if dataset_info_path:
    return f"overlay colours: the palette of {dataset_info_path} (--palette)"
  path = os.path.join(home, standard_fields.DatasetInfoFields.file_name)
  if os.path.isfile(path):
    return (f"overlay colours: the dataset's own palette, from {path} "
            f"(--palette {DISTINCT_PALETTE} gives {distinct})")
  return (f"overlay colours: {distinct} (no "
          f"{standard_fields.DatasetInfoFields.file_name} beside the model, "
          "so the legend names class_<id>)")


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
    labels, colours = predict_geometry.postprocess(
        prediction, image.shape[:2], drawing.crop, drawing.threshold)
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


def _check_options(alpha, threshold, on_error, video_output, fps, max_frames,
                   fit):
  """ValueErrors naming predict.py's flags for values out of range, raised
  before anything is read or loaded."""
  if on_error not in ("skip", "fail"):
    raise ValueError(f"--on_error must be skip or fail, got {on_error!r}")
  if fit not in predict_geometry.FITS:
    raise ValueError(f"--fit must be one of "
                     f"{', '.join(predict_geometry.FITS)}, got {fit!r}")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"--overlay_alpha must be in 0..1, got {alpha}")
  if not 0.0 < threshold < 1.0:
    raise ValueError(f"--threshold must be in (0, 1), got {threshold}")
  video_outputs(video_output, 0.0)
  if fps is not None and not fps > 0:
    raise ValueError(f"--fps must be > 0, got {fps}")
  if max_frames < 0:
    raise ValueError(f"--max_frames must be >= 0 (0: all), got {max_frames}")


def _timed_run(predictor, image, options, warm_up):
  """(the model's output for `image`'s part of the input, milliseconds of
  the run alone, the fit_box used)."""
  fed = predict_geometry.crop_rows(image, options.crop)
  box = predict_geometry.fit_box(fed.shape[:2], options.size, options.fit)
  batch = predict_geometry.preprocess(
      fed, options.size, predictor.input_shape[0], predictor.input_dtype, box)
  if warm_up:
    predictor(batch)  # Warm-up: tracing and allocation are not latency.
  start = time.perf_counter()
  prediction = predictor(batch)[0]
  latency = (time.perf_counter() - start) * 1000.0
  return predict_geometry.unbox(prediction, options.size, box), latency, box


# What predict() was asked for, handed to the loop in one piece.
_Options = collections.namedtuple(
    "_Options", ["model", "palette_path", "crop", "size", "threshold", "alpha",
                 "on_error", "fit", "unit"])
# describe_fit lines for at most this many input sizes (a folder of photos
# may hold as many sizes as files).
_MAX_FIT_LINES = 3


def _say_fit(image, box, options, seen, log):
  """Logs describe_fit the first time an input size comes, up to
  _MAX_FIT_LINES sizes."""
  image_size = image.shape[:2]
  if image_size in seen or len(seen) >= _MAX_FIT_LINES:
    return
  seen.add(image_size)
  top, bottom = options.crop or (0, 0)
  line = predict_geometry.describe_fit(options.unit, image_size,
                      (image_size[0] - top - bottom, image_size[1]),
                      options.size, box)
  if line:
    log(line + ("; other sizes not listed" if len(seen) == _MAX_FIT_LINES
                else ""))


def _run_all(items, predictor, outputs, options, log, bar):
  """Predicts each (name, image or problem) of `items` into `outputs`.

  Returns (names, model latencies in ms, skipped: one message each).
  """
  names, latencies, skipped, drawing, sizes = [], [], [], None, set()
  for name, image in items:
    if isinstance(image, Exception):
      if options.on_error == "fail":
        raise image
      log(f"{name}: skipped, {image}")
      skipped.append(str(image))
      continue
    prediction, latency, box = _timed_run(predictor, image, options,
                                          warm_up=not latencies)
    latencies.append(latency)
    _say_fit(image, box, options, sizes, log)
    if drawing is None:  # Probabilities tell the number of classes to check.
      num_classes = prediction.shape[-1] if prediction.dtype.kind == "f" else None
      home = model_home(options.model)
      drawing = _Drawing(options.crop, options.threshold, options.alpha,
                         *load_legend(home, options.palette_path, num_classes))
      if not predict_geometry.is_colours(prediction):
        log(palette_source(home, options.palette_path))
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
            log=print, video_output="auto", fps=None, max_frames=0,
            fit="resize"):
  """Predicts every image or frame of `inputs` with `model`; writes overlays.

  Args:
    model: export dir, SavedModel dir, frozen .pb, .tflite or .onnx.
    inputs: a directory of images, a glob or a video file.
    output_dir: where `<name>_labels.png` and `<name>_overlay.png` go, and a
      video's `<video>_overlay.mp4` / `.gif`.
    crop, resize, alpha, palette_path, num_threads, threshold, fit:
      predict.py's --crop (top, bottom), --resize (H, W), --overlay_alpha,
      --palette (a dataset_info.json or DISTINCT_PALETTE), --num_threads,
      --threshold and --fit (predict_geometry.FITS: how an image of another
      aspect meets a fixed input).
    on_error: an unreadable image or frame: "skip" reports it and goes on
      (listed in the result's `skipped`), "fail" stops there.
    log: where the per-image, skip and summary lines go, and the lines
      saying how inputs met the model (describe_fit) and where the colours
      come from (palette_source); the progress bar shown instead of
      per-image lines past 50 inputs prints to stdout.
    video_output, fps, max_frames: --video_output (see video_outputs),
      --fps (of the written video; None: the input's) and --max_frames (0: all).

  Returns:
    dict: names (in order), latencies_ms (model run only), skipped (one
    message each), num_skipped (frames lost inside a video included),
    outputs (video files written), pngs (whether PNG pairs were), summary.
  """
  _check_options(alpha, threshold, on_error, video_output, fps, max_frames,
                 fit)
  kind, source = list_inputs(inputs)
  video = video_io.Video(source) if kind == "video" else None  # Checked before the model.
  predictor = open_predictor(model, num_threads)
  options = _Options(
      model, palette_path, crop,
      predict_geometry.model_size(predictor.input_shape, resize), threshold,
      alpha, on_error, fit, "frame" if video else "image")
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
