"""How an image meets an exported model's input, and how the output comes back.

predict.py's pre- and post-processing, shared by every runtime: --crop
removes rows, the rest is fitted to a fixed input (--fit: resized to it, or
letterboxed, keeping its aspect; --resize sets the input of a model without
a fixed size), and the model's output for the image's part of the input is
resized back to the image's own size, cropped rows labelled ignore.
"""

import numpy as np
from PIL import Image

from fast_seg.core import preprocessor
from fast_seg.core import standard_fields


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


# How an image meets a fixed input of another shape (--fit), the default
# first. Resizing wins although it changes the aspect inside the model: the
# CamVid 0.25 model on 2048x1024 frames into its 480x360 input scored 25.0
# mIoU on the 8 Cityscapes samples (CamVid's classes) resized, 19.1
# letterboxed with grey bars (17.2 mirrored, 12.0 black: the sky next to
# a bar suffers most), and 51.4 / 46.0 road IoU on KITTI's 1242x375. The
# letterbox has fewer pixels on the image and edges the model never saw.
FITS = ("resize", "letterbox")
# The letterbox's padding: training's crop padding, ~0 once normalised.
PAD_VALUE = round(preprocessor.IMAGE_PAD_VALUE)


def fit_box(image_size, size, fit="resize"):
  """(top, left, height, width) of the image inside the model's input.

  Args:
    image_size: (H, W) of the image fed (after --crop).
    size: (H, W) of the model's input, or None (fed as it is).
    fit: "resize" fills the input, each axis by its own factor; "letterbox"
      scales the image by the one factor that fits it (the smaller ratio),
      centred, so it keeps its aspect.
  """
  if size is None:
    return (0, 0) + tuple(image_size)
  if fit == "resize":
    return (0, 0) + tuple(size)
  scale = min(size[0] / image_size[0], size[1] / image_size[1])
  height = min(max(round(image_size[0] * scale), 1), size[0])
  width = min(max(round(image_size[1] * scale), 1), size[1])
  return ((size[0] - height) // 2, (size[1] - width) // 2, height, width)


def preprocess(image, size, batch_size, dtype, box=None):
  """The model's input batch: the image resized (bilinear) into `box` of an
  input of `size` (fit_box; None: the whole input), repeated N times."""
  if size:
    top, left, height, width = box or (0, 0) + tuple(size)
    if tuple(image.shape[:2]) != (height, width):
      image = np.asarray(Image.fromarray(image).resize(
          (width, height), Image.BILINEAR))
    if (height, width) != tuple(size):
      canvas = np.full(tuple(size) + image.shape[2:], PAD_VALUE, np.uint8)
      canvas[top:top + height, left:left + width] = image
      image = canvas
  return np.repeat(image[None], batch_size or 1, axis=0).astype(dtype)


def unbox(prediction, size, box):
  """The part of a prediction for an input of `size` that `box` covers.

  An output at another resolution than the input (a model whose output
  stride is left to the caller) has the box scaled to it.
  """
  if size is None or box == (0, 0) + tuple(size):
    return prediction
  rows = prediction.shape[0] / size[0]
  cols = prediction.shape[1] / size[1]
  top, left, height, width = box
  return prediction[round(top * rows):round((top + height) * rows),
                    round(left * cols):round((left + width) * cols)]


def describe_fit(unit, image_size, fed_size, size, box):
  """The line saying how inputs of `image_size` met the model, or None
  when they went in as they are.

  Args:
    unit: "image" or "frame".
    image_size: (H, W) of the input; fed_size: after --crop.
    size, box: the model's input size and the image's box in it (fit_box).
  """
  if size is None or tuple(fed_size) == tuple(size):
    return None
  pixels = lambda hw: f"{hw[1]}x{hw[0]}"
  top, left, height, width = box
  what = f"{unit}s {pixels(image_size)}"
  if tuple(fed_size) != tuple(image_size):
    what += f" (cropped to {pixels(fed_size)})"
  if (height, width) == tuple(size):
    aspects = fed_size[1] / fed_size[0], size[1] / size[0]
    how = f"resized to the model's {pixels(size)} input " + (
        "(same aspect)" if abs(aspects[0] - aspects[1]) < 0.01 else
        f"(aspect {aspects[0]:.2f} -> {aspects[1]:.2f}; --fit letterbox "
        "keeps it)")
  else:
    bars = (f"{top} grey rows above and {size[0] - height - top} below"
            if top else
            f"{left} grey columns left and {size[1] - width - left} right")
    how = (f"letterboxed into the model's {pixels(size)} input (scaled to "
           f"{width}x{height}, {bars})")
  return (f"{what} {how}, the output resized back: overlays at "
          f"{pixels(image_size)}")


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
  if is_colours(prediction):
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


def is_colours(prediction):
  """Whether a model's output is uint8 RGB colours (--output colours)."""
  return (prediction.ndim == 3 and prediction.dtype == np.uint8
          and prediction.shape[-1] == 3)
