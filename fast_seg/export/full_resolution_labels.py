"""Labels at the input size from low-resolution logits: the served tail.

A segmentation network predicts logits at 1/4 to 1/8 of the input size; the
served labels are the arg-max of those logits resized bilinearly to the
input size. Done literally ('resize'), that writes and reads C float maps at
full size: at 1024x2048 and 19 classes 160 MB per frame, a fifth of a
half-width ICNet's time. Three ways to the labels:

- 'resize': resize every logit map, then the arg-max. The reference.
- 'boundary': the same labels, computed only where they can differ from
  the low-resolution ones. A bilinear value is a convex combination of its
  2x2 source pixels, so where those four share one arg-max (or lie on one
  side of a binary threshold) the combination does too. Each 2x2 cell whose
  corners agree is filled with their label; only the others (the class
  boundaries, ~10% of the cells of a trained model) are interpolated, with
  TensorFlow's own half-pixel weights and formula, so the labels equal
  'resize' bit for bit where its arithmetic is the same (tests check it).
  It needs an integer upsampling factor and static sizes, and pays off
  while few cells are mixed: otherwise (noise, as some untrained models
  predict) the graph takes 'resize' itself.
- 'nearest': the arg-max at low resolution, upsampled by nearest
  neighbour. Approximate: labels differ along class boundaries
  (export.py --fast_labels).
"""

import numpy as np
import tensorflow as tf

from fast_seg.core import standard_fields as fields

RESIZE = "resize"
BOUNDARY = "boundary"
NEAREST = "nearest"
METHODS = (BOUNDARY, RESIZE, NEAREST)
# export.py's and the benchmark's default: per runtime, the exact method
# that runs faster there (resolve()).
AUTO = "auto"
# The runtimes a file is served on: TensorFlow (SavedModel, frozen graph),
# LiteRT float and int8, onnxruntime, Core ML.
TF, TFLITE, TFLITE_INT8, ONNX, COREML = (
    "tf", "tflite", "tflite_int8", "onnx", "coreml")
# What 'auto' serves on each: the exact method that ran faster there, timed
# run for run on trained CamVid models (the table in docs/export.md, "The
# full-resolution labels tail"). The int8 calibrator crashes on the boundary
# graph; Core ML converts the model's own network, which always resizes.
AUTO_METHODS = {TF: BOUNDARY, TFLITE: BOUNDARY, TFLITE_INT8: RESIZE,
                ONNX: RESIZE, COREML: RESIZE}

# Above this fraction of mixed cells the boundary graph resizes every map
# instead: at 1024x2048 it cost 0.25x of 'resize' with 9% of the cells
# mixed (a trained CamVid ICNet) and 2x with all of them (random logits),
# so the two meet near 45%.
MAX_MIXED_FRACTION = 0.4


def check_method(method, flag="--labels_method"):
  if method not in (AUTO, *METHODS):
    raise ValueError(f"{flag} must be one of {', '.join((AUTO, *METHODS))}, "
                     f"got '{method}'")
  return method


def from_flags(labels_method, fast_labels):
  """--labels_method, with --fast_labels (kept from earlier releases) as
  another name of 'nearest'."""
  check_method(labels_method)
  if not fast_labels:
    return labels_method
  if labels_method not in (AUTO, NEAREST):
    raise ValueError(f"--fast_labels is --labels_method {NEAREST}; it "
                     f"contradicts --labels_method {labels_method}")
  return NEAREST


def resolve(method, runtime=TF):
  """The method a `runtime` file serves for `method`: 'auto' is the exact
  method measured faster there (AUTO_METHODS), others are themselves, but
  Core ML always resizes, and 'boundary' in int8 LiteRT is a ValueError."""
  check_method(method)
  if runtime not in AUTO_METHODS:
    raise ValueError(f"runtime must be one of {', '.join(AUTO_METHODS)}, got "
                     f"'{runtime}'")
  if method == BOUNDARY and runtime == TFLITE_INT8:
    # The calibrator crashes the whole process on its WHERE / tf.cond graph.
    raise ValueError("--labels_method boundary cannot be calibrated for int8 "
                     "TFLite (--quantize int8, tflite_int8); use auto or "
                     "resize")
  if runtime == COREML:
    return RESIZE  # Core ML converts the model's own network, which resizes.
  return AUTO_METHODS[runtime] if method == AUTO else method


def labels(model, logits, size, method=BOUNDARY):
  """int32 labels [N, H, W] at `size` from the model's `logits`.

  Args:
    model: the SegmentationModel (its arg-max or binary threshold).
    logits: its main head's logits [N, h, w, C].
    size: (H, W), Python ints where static.
    method: a name in METHODS.
  """
  if method == AUTO:  # A file's method: resolve() it for its runtime first.
    raise ValueError("labels(): resolve 'auto' for a runtime first")
  check_method(method)
  if method == NEAREST:
    return _nearest_labels(model, logits, size)
  layout = _cell_layout(logits.shape, size)
  if method == RESIZE or layout is None:
    return _resized_labels(model, logits, size)
  return _boundary_labels(model, logits, size, layout)


def _resized_labels(model, logits, size):
  return model.postprocess(logits, size)[fields.PredictionFields.labels]


def _nearest_labels(model, logits, size):
  # float32: TFLite's nearest resize has no integer kernels; ids are exact
  # in float32.
  low = tf.cast(model.labels_of(tf.cast(logits, tf.float32)),
                tf.float32)[..., None]
  upsampled = tf.image.resize(low, size, method="nearest")[..., 0]
  # Rounded: an int8 TFLite model quantizes this float map too.
  return tf.cast(tf.round(upsampled), tf.int32)


def _axis_layout(low, high):
  """(factor, offset, lerps) of one axis resized low -> high, or None.

  TensorFlow's half-pixel bilinear resize reads output pixel i at
  (i + 0.5) * low / high - 0.5 (float32), between the source pixels below
  and above, weighted by the fraction `lerp`. With an integer factor s the
  output pixels fall in blocks of s per source cell: cell k (between source
  pixels k - 1 and k, on the source padded by one edge pixel each side)
  holds outputs k * s - offset ... k * s - offset + s - 1, with the same s
  lerps in every block. None where that does not hold exactly in float32.
  """
  if high % low or high == low:
    return None
  factor = high // low
  position = ((np.arange(high, dtype=np.float32) + np.float32(0.5))
              * (np.float32(low) / np.float32(high)) - np.float32(0.5))
  cell = np.floor(position).astype(np.int64) + 1  # on the padded source
  # Cell cell[0] holds outputs 0 .. first_count - 1 and `offset` before 0.
  first_count = int(np.sum(cell == cell[0]))
  offset = int(cell[0] + 1) * factor - first_count
  lerps = position - np.floor(position)
  expected_cell = (np.arange(high) + offset) // factor
  pattern = lerps[(np.arange(factor) - offset) % factor]
  if (np.any(cell != expected_cell)
      or np.any(lerps != pattern[(np.arange(high) + offset) % factor])):
    return None
  return factor, offset, pattern.astype(np.float32)


def _cell_layout(logits_shape, size):
  """The two axes' _axis_layout, or None where 'boundary' cannot apply."""
  if not isinstance(size, tuple) or None in (*logits_shape[1:3], *size):
    return None
  rows = _axis_layout(logits_shape[1], size[0])
  columns = _axis_layout(logits_shape[2], size[1])
  return None if rows is None or columns is None else (rows, columns)


def _edge_padded(values):
  """[N, h, w, ...] with each border pixel repeated once on the outside:
  interpolating it is the resize's clamping at the edges.

  Concatenated slices, not tf.pad(mode='SYMMETRIC'): LiteRT runs that as
  MIRROR_PAD off XNNPACK, measured 9.7 ms against 1.7 at 258x514x11.
  """
  values = tf.concat([values[:, :1], values, values[:, -1:]], 1)
  return tf.concat([values[:, :, :1], values, values[:, :, -1:]], 2)


def _boundary_labels(model, logits, size, layout):
  """'boundary' (see the module docstring), 'resize' when too many mixed."""
  logits = tf.cast(logits, tf.float32)
  padded = _edge_padded(logits)
  corner = model.labels_of(padded)  # [N, h + 2, w + 2]
  top_left = corner[:, :-1, :-1]
  mixed = ((top_left != corner[:, :-1, 1:]) | (top_left != corner[:, 1:, :-1])
           | (top_left != corner[:, 1:, 1:]))  # [N, h + 1, w + 1] cells
  return tf.cond(
      tf.reduce_mean(tf.cast(mixed, tf.float32)) > MAX_MIXED_FRACTION,
      lambda: _resized_labels(model, logits, size),
      lambda: _fill_cells(model, padded, top_left, mixed, size, layout))


def _interpolated_cells(padded, cells, layout):
  """Bilinear logits [K, s_y, s_x, C] of the output pixels of `cells`
  ([K, 3] batch, row, column), as TensorFlow's resize computes them."""
  # No slicing syntax in here: tf2onnx leaves a StridedSlice inside a
  # tf.cond branch unconverted.
  (_, _, row_lerps), (_, _, column_lerps) = layout

  def corner(down, right):
    return tf.expand_dims(tf.gather_nd(padded, cells + [0, down, right]), 1)

  x_lerp = tf.constant(column_lerps.reshape(1, -1, 1))
  top_left, top_right = corner(0, 0), corner(0, 1)
  bottom_left, bottom_right = corner(1, 0), corner(1, 1)
  top = top_left + (top_right - top_left) * x_lerp  # [K, s_x, C]
  bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
  y_lerp = tf.constant(row_lerps.reshape(1, -1, 1, 1))
  return (tf.expand_dims(top, 1)
          + tf.expand_dims(bottom - top, 1) * y_lerp)


def _fill_cells(model, padded, top_left, mixed, size, layout):
  """Every cell's s_y x s_x labels laid out at full size, cropped to size."""
  (row_factor, row_offset, _), (column_factor, column_offset, _) = layout
  cells = tf.cast(tf.where(mixed), tf.int32)
  values = _interpolated_cells(padded, cells, layout)
  cell_labels = model.labels_of(values)  # [K, s_y, s_x]
  shape = tf.shape(top_left)
  filled = tf.broadcast_to(tf.reshape(top_left, tf.concat([shape, [1, 1]], 0)),
                           tf.concat([shape, [row_factor, column_factor]], 0))
  filled = tf.tensor_scatter_nd_update(filled, cells, cell_labels)
  # [N, h + 1, s_y, w + 1, s_x] -> full size, then the padding cropped.
  filled = tf.transpose(filled, [0, 1, 3, 2, 4])
  filled = tf.reshape(filled, [shape[0], shape[1] * row_factor,
                               shape[2] * column_factor])
  return tf.slice(filled, [0, row_offset, column_offset],
                  [-1, size[0], size[1]])
