"""What an export was asked for, checked before any work is done.

An ExportRequest holds export()'s (and so export.py's) options and refuses
the combinations no format can honour, with errors naming the flags, before
a model is built or the export folder touched. It also answers the questions
every later step asks: the labels tail and runtime of each format, and the
serving contract with --labels_dtype applied.

--formats is checked against the writers registered in formats.FORMATS, so
the format modules, which register themselves when imported (each with its
rank: the order they are written in), are imported here: a request is never
checked against a partial list.
"""

import dataclasses
from typing import Any

import tensorflow as tf

from fast_seg.export import formats as export_formats
from fast_seg.export import full_resolution_labels
from fast_seg.export import graph_formats  # pylint: disable=unused-import
from fast_seg.export import tflite_format
from fast_seg.export import onnx_format  # pylint: disable=unused-import
from fast_seg.export import coreml_format  # pylint: disable=unused-import
from fast_seg.export import serving
from fast_seg.utils import memory

# Always written: the converters start from the SavedModel.
DEFAULT_FORMATS = ("saved_model", "frozen_graph")
# The runtime of each format but tflite (float or int8: its quantize).
_FORMAT_RUNTIMES = {"onnx": full_resolution_labels.ONNX,
                    "coreml": full_resolution_labels.COREML}


@dataclasses.dataclass(frozen=True)
class ExportRequest:
  """What export() was asked for (its arguments; see there)."""
  input_shape: tuple
  pad_to_shape: Any = None
  formats: tuple = DEFAULT_FORMATS
  quantize: str = "none"
  output: str = "labels"
  input_type: str = "uint8"
  random_weights: bool = False
  num_calibration_images: int = 100
  labels_method: str = full_resolution_labels.AUTO
  contract: str = "fast_seg"
  labels_dtype: Any = None

  @property
  def serving_contract(self):
    """The contract, its labels' dtype replaced by --labels_dtype."""
    contract = serving.CONTRACTS[self.contract]
    if self.labels_dtype:
      contract = dataclasses.replace(contract, labels_dtype=self.labels_dtype)
    return contract

  def runtime_of(self, format_name):
    """The full_resolution_labels runtime a format's file runs on."""
    if format_name == "tflite":
      return (full_resolution_labels.TFLITE_INT8 if self.quantize == "int8"
              else full_resolution_labels.TFLITE)
    return _FORMAT_RUNTIMES.get(format_name, full_resolution_labels.TF)

  def labels_method_of(self, format_name="saved_model"):
    """The labels tail a format's file serves."""
    return full_resolution_labels.resolve(self.labels_method,
                                          self.runtime_of(format_name))

  @property
  def flexible_input(self):
    """The input has no batch axis or a dynamic (None) size."""
    return len(self.input_shape) == 3 or None in self.input_shape

  def check(self):
    """ValueErrors for flags no format can honour, before any work."""
    unknown = [f for f in self.formats if f not in export_formats.FORMATS]
    if unknown:
      raise ValueError(f"--formats must be among "
                       f"{', '.join(export_formats.names())}; "
                       f"got {', '.join(unknown)}")
    if self.quantize not in tflite_format.QUANTIZE_MODES:
      raise ValueError(f"--quantize must be one of "
                       f"{', '.join(tflite_format.QUANTIZE_MODES)}, got "
                       f"'{self.quantize}'")
    if self.quantize != "none" and "tflite" not in self.formats:
      raise ValueError("--quantize applies to the tflite format; add tflite "
                       "to --formats")
    self._check_labels_method()
    self._check_contract()
    self._check_labels_dtype()
    self._check_input_shape()
    if "coreml" in self.formats and (self.output == "colours"
                                     or self.pad_to_shape
                                     or self.input_shape[0] != 1):
      raise ValueError("the coreml format takes batch 1, no --pad_to_shape "
                       "and --output labels or probabilities")

  def _check_contract(self):
    if self.contract not in serving.CONTRACTS:
      raise ValueError(f"--contract must be one of "
                       f"{', '.join(serving.CONTRACTS)}, got '{self.contract}'")
    contract = self.serving_contract
    if self.output not in contract.outputs:
      raise ValueError(f"--contract {self.contract} serves --output "
                       f"{' or '.join(contract.outputs)}, got '{self.output}'")
    refused = [f for f in self.formats
               if contract.formats is not None and f not in contract.formats]
    if refused:
      raise ValueError(f"--contract {self.contract} is written as "
                       f"{', '.join(contract.formats)}; not as "
                       f"{', '.join(refused)}")

  def _check_labels_method(self):
    """ValueErrors for a method no requested format can serve."""
    for name in ("saved_model", *self.formats):
      self.labels_method_of(name)

  def _check_labels_dtype(self):
    if not self.labels_dtype:
      return
    if self.labels_dtype not in serving.LABELS_DTYPES:
      raise ValueError(f"--labels_dtype must be one of "
                       f"{', '.join(serving.LABELS_DTYPES)}, got "
                       f"'{self.labels_dtype}'")
    if self.output != "labels" or "coreml" in self.formats:
      raise ValueError("--labels_dtype sets the type of --output labels in "
                       "the saved_model, frozen_graph, tflite and onnx "
                       "formats (Core ML's labels are int32)")

  def check_num_classes(self, num_classes):
    """A ValueError where the labels' dtype cannot hold every class id."""
    dtype = tf.as_dtype(self.serving_contract.labels_dtype)
    if self.output == "labels" and num_classes - 1 > dtype.max:
      raise ValueError(f"--labels_dtype {dtype.name} holds ids up to "
                       f"{dtype.max}; the model has {num_classes} classes")

  def _check_input_shape(self):
    """Only some formats take an input of rank 3 or of dynamic size; a
    static one must fit in memory (the export runs the model on it)."""
    if not self.flexible_input:
      batch, height, width, _ = self.input_shape
      memory.check_batch_fits(batch, (height, width), "--input_shape")
      return
    rigid = [f for f in self.formats
             if not export_formats.writer(f).flexible_input]
    if rigid:
      flexible = [n for n, w in export_formats.in_order() if w.flexible_input]
      raise ValueError(
          f"--input_shape {_shape_text(self.input_shape)} (no batch axis or "
          f"-1 sizes) can be written as {', '.join(flexible)}; "
          f"{', '.join(rigid)} need a static N,H,W,3")
    if self.quantize != "none":
      raise ValueError("--quantize needs a static N,H,W,3 --input_shape")


def _shape_text(shape):
  return ",".join("-1" if v is None else str(v) for v in shape)
