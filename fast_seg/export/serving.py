"""The serving contract: the names an exported model is called and found by.

Every format keeps the SavedModel's interface (uint8 or float32 pixels
`inputs` [N, H, W, 3] in, `predictions` out), and predict.py, the benchmark
and the converters find a model by these names. Defined once here, so that
a name cannot drift between the writer of a file and its readers.
"""

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
