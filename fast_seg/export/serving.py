"""The serving contract: the names an exported model is called and found by.

Every format keeps the SavedModel's interface (uint8 or float32 pixels
`inputs` [N, H, W, 3] in, `predictions` out), and predict.py, the benchmark
and the converters find a model by these names. Defined once here, so that
a name cannot drift between the writer of a file and its readers.
"""

import dataclasses
from typing import Any

from fast_seg.core import preprocessor

# The exported function's tensors, in every format but Core ML.
INPUT_NAME = "inputs"
OUTPUT_NAME = "predictions"
# The same tensors in a frozen GraphDef (its ops are named as the tensors).
INPUT_TENSOR = f"{INPUT_NAME}:0"
OUTPUT_TENSOR = f"{OUTPUT_NAME}:0"
# The SavedModel signature that serves them, and its MetaGraph's tag.
SIGNATURE_KEY = "serving_default"
SERVING_TAG = "serve"
# Core ML takes an image, not a tensor; its outputs are named by kind.
COREML_INPUT_NAME = "image"

# The export folder: what export.py writes and predict.py reads.
SAVED_MODEL_DIR = "saved_model"
# TensorFlow's own name of the graph file inside a SavedModel folder.
SAVED_MODEL_FILE = "saved_model.pb"
FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
REPORT_NAME = "export_report.json"
INFO_NAME = "export_info.json"

# What the served function can return, and the pixel types it can take.
OUTPUT_KINDS = ("labels", "probabilities", "colours")
INPUT_TYPES = ("uint8", "float32")
# The integer types labels can be served as (export.py --labels_dtype).
LABELS_DTYPES = ("int32", "int64", "uint16", "uint8")


@dataclasses.dataclass(frozen=True)
class Contract:
  """An interface apps were written against, kept so they run unchanged.

  Attributes:
    labels_dtype: the dtype of `predictions` when it holds labels.
    labels_channel: labels are [N, H, W, 1] instead of [N, H, W].
    pad_value: the pixel value --pad_to_shape pads the image with.
    coreml_output: the Core ML output's name; None: named by its kind.
    coreml_channels_first: the Core ML output is [C, H, W] (one image,
      channels first), as Keras' Core ML converter wrote it.
    outputs: the --output kinds this contract serves.
    formats: the --formats it can be written in; None: every format.
  """
  labels_dtype: str = "int32"
  labels_channel: bool = False
  pad_value: float = preprocessor.IMAGE_PAD_VALUE  # training's crop padding
  coreml_output: Any = None
  coreml_channels_first: bool = False
  outputs: tuple = OUTPUT_KINDS
  formats: Any = None


# export.py --contract. fast_seg's own; the TF1 fast-semantic-segmentation
# frozen graph (arg-max int64 [N, H, W, 1], zero padding); the Keras Core ML
# projects (softmax probabilities [C, H, W] named `output`).
CONTRACTS = {
    "fast_seg": Contract(),
    "tf1": Contract(labels_dtype="int64", labels_channel=True, pad_value=0.0,
                    outputs=("labels",),
                    formats=("saved_model", "frozen_graph", "tflite", "onnx")),
    "keras_coreml": Contract(coreml_output="output", coreml_channels_first=True,
                             outputs=("probabilities",)),
}
