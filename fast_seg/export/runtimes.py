"""Opening and running an exported model, whatever its format.

predict.py, the latency timer, the benchmark and export.py's agreement check
all run exports; they do it here, so that a frozen graph (say) is run one
way everywhere and a fix to how a runtime is fed reaches every caller.

Every opened model has the same face:
  input_shape: the model's input shape (None where a dimension is dynamic);
  input_dtype: the numpy dtype of its `inputs`;
  model(images) -> the numpy `predictions` of a batch;
  close() (or `with`): releases what the runtime holds (a TF Session).

Core ML is not here: coremltools cannot run a model on Linux; its export is
checked by its spec (coreml_format).
"""

import os

import numpy as np
import tensorflow as tf

from fast_seg.export import serving
from fast_seg.utils import output_files

# The file endings open_model knows, beside a SavedModel / export folder.
FROZEN_GRAPH_SUFFIX = ".pb"
TFLITE_SUFFIX = ".tflite"
ONNX_SUFFIX = ".onnx"
MODEL_SUFFIXES = (FROZEN_GRAPH_SUFFIX, TFLITE_SUFFIX, ONNX_SUFFIX)

# onnxruntime's names of the input types an export can take.
_ONNX_NUMPY_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32}


class _Runtime:
  """What every opened model shares: `with` support and a no-op close."""

  input_shape = ()
  input_dtype = np.dtype(np.uint8)

  def close(self):
    pass

  def __enter__(self):
    return self

  def __exit__(self, *unused_exc_info):
    self.close()


class SavedModel(_Runtime):
  """The serving signature of a SavedModel folder."""

  def __init__(self, path):
    self._serve = tf.saved_model.load(path).signatures[serving.SIGNATURE_KEY]
    spec = self._serve.structured_input_signature[1][serving.INPUT_NAME]
    self.input_shape = tuple(spec.shape)
    self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)

  def __call__(self, images):
    outputs = self._serve(**{serving.INPUT_NAME: tf.constant(images)})
    return outputs[serving.OUTPUT_NAME].numpy()


def _read_graph_def(path):
  with tf.io.gfile.GFile(path, "rb") as f:
    return tf.compat.v1.GraphDef.FromString(f.read())


class FrozenGraph(_Runtime):
  """A frozen GraphDef (or its .pb file), `inputs:0` -> `predictions:0`.

  One TF1 Session, kept open for many runs: it is how the TF1 project's
  users run frozen_inference_graph.pb, and the only way to trace a run's
  per-op times (run's `options` / `run_metadata`, used by the op profile).
  """

  def __init__(self, graph_def_or_path):
    graph_def = graph_def_or_path
    if isinstance(graph_def_or_path, (str, os.PathLike)):
      graph_def = _read_graph_def(graph_def_or_path)
    graph = tf.Graph()
    with graph.as_default():
      tf.graph_util.import_graph_def(graph_def, name="")
    try:
      inputs = graph.get_tensor_by_name(serving.INPUT_TENSOR)
      graph.get_tensor_by_name(serving.OUTPUT_TENSOR)
    except KeyError:
      where = (graph_def_or_path if isinstance(graph_def_or_path, str)
               else "the frozen graph")
      raise ValueError(f"{where}: no {serving.INPUT_TENSOR} / "
                       f"{serving.OUTPUT_TENSOR} tensors") from None
    self.input_shape = tuple(inputs.shape)
    self.input_dtype = np.dtype(inputs.dtype.as_numpy_dtype)
    self._session = tf.compat.v1.Session(graph=graph)

  def __call__(self, images, options=None, run_metadata=None):
    return self._session.run(serving.OUTPUT_TENSOR,
                             {serving.INPUT_TENSOR: images},
                             options=options, run_metadata=run_metadata)

  def close(self):
    self._session.close()


def litert():
  """LiteRT's interpreter module."""
  # Imported on first use: ai-edge-litert comes with the optional [export]
  # extra, and the export package must import without it.
  from ai_edge_litert import interpreter  # pylint: disable=import-outside-toplevel
  return interpreter


class TFLite(_Runtime):
  """A .tflite model in the LiteRT interpreter.

  LiteRT's default CPU op resolver applies the XNNPACK delegate to every op
  it supports (float32, float16 weights and int8 alike); the rest run on the
  builtin kernels. `num_threads` is used by both.
  """

  def __init__(self, path, num_threads=2):
    self.path = path
    try:
      interpreter = litert().Interpreter(model_path=path,
                                         num_threads=num_threads)
    except ValueError as e:
      raise ValueError(f"{path}: not a loadable TFLite model ({e})") from None
    self._runner = interpreter.get_signature_runner(serving.SIGNATURE_KEY)
    spec = self._runner.get_input_details()[serving.INPUT_NAME]
    self.input_shape = tuple(int(v) for v in spec["shape"])
    self.input_dtype = np.dtype(spec["dtype"])

  def __call__(self, images):
    """Runs on `images` of exactly the input shape and dtype (no resizing).

    Returns:
      numpy array: int32 labels [N, H, W] or float32 probabilities
      [N, H, W, C], as the SavedModel returned.
    """
    images = np.asarray(images)
    if tuple(images.shape) != self.input_shape:
      raise ValueError(f"{self.path} takes {serving.INPUT_NAME} of shape "
                       f"{self.input_shape}, got {images.shape}: resize or "
                       "crop the images, or convert an export of that shape")
    if images.dtype != self.input_dtype:
      raise ValueError(f"{self.path} takes {self.input_dtype.name} "
                       f"{serving.INPUT_NAME}, got {images.dtype}")
    return self._runner(**{serving.INPUT_NAME: images})[serving.OUTPUT_NAME]


class Onnx(_Runtime):
  """An .onnx model in onnxruntime on the CPU."""

  def __init__(self, path, num_threads=None):
    # Imported here: onnxruntime comes with the optional [export] extra.
    import onnxruntime  # pylint: disable=import-outside-toplevel
    options = onnxruntime.SessionOptions()
    if num_threads:
      options.intra_op_num_threads = num_threads
    try:
      self._session = onnxruntime.InferenceSession(
          path, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind11 types
      reason = str(e).rsplit(":", maxsplit=1)[-1].strip() or type(e).__name__
      raise ValueError(f"{path}: not a loadable ONNX model ({reason})") from None
    (model_input,) = self._session.get_inputs()
    if model_input.type not in _ONNX_NUMPY_TYPES:
      raise ValueError(f"{path}: unsupported input type {model_input.type}")
    self._input_name = model_input.name
    self.input_dtype = np.dtype(_ONNX_NUMPY_TYPES[model_input.type])
    # Symbolic dimensions ('unk__12') are dynamic: None.
    self.input_shape = tuple(v if isinstance(v, int) else None
                             for v in model_input.shape)
    # `predictions` (our converter's name), else the only output (files
    # converted elsewhere may call it `predictions:0`).
    names = [o.name for o in self._session.get_outputs()]
    self._output_name = (serving.OUTPUT_NAME
                         if serving.OUTPUT_NAME in names else names[0])

  def __call__(self, images):
    """Runs on `images` cast to the input dtype; returns `predictions`."""
    feed = {self._input_name: np.asarray(images).astype(self.input_dtype,
                                                        copy=False)}
    return self._session.run([self._output_name], feed)[0]


def _open_folder(path, flag):
  """An export dir's SavedModel (only a complete export's), or a SavedModel."""
  nested = os.path.join(path, serving.SAVED_MODEL_DIR)
  # export.py moves its report in last (output_files.staged_folder):
  # without it, the export was stopped or killed before it was complete.
  if ((os.path.isdir(nested)
       or os.path.isdir(output_files.staging_folder(path)))
      and not os.path.isfile(os.path.join(path, serving.REPORT_NAME))):
    raise ValueError(f"{flag} {path}: an incomplete export (no "
                     f"{serving.REPORT_NAME}; export.py did not finish); "
                     "export it again")
  if os.path.isdir(nested):
    return SavedModel(nested)
  if os.path.isfile(os.path.join(path, serving.SAVED_MODEL_FILE)):
    return SavedModel(path)
  raise ValueError(f"{flag} {path}: neither an export dir (with "
                   f"{serving.SAVED_MODEL_DIR}/) nor a SavedModel")


def open_model(path, num_threads=2, flag="--model"):
  """The opened model of an export dir, SavedModel dir, .pb, .tflite or .onnx.

  Args:
    path: the export; a folder is an export dir or a SavedModel, a file is
      told by its ending (MODEL_SUFFIXES).
    num_threads: the threads of LiteRT and onnxruntime (TensorFlow's are
      process-wide).
    flag: the command-line flag that named `path`, for the error messages.

  Raises:
    FileNotFoundError: no such path.
    ValueError: a path that is none of these, or a file its runtime refuses.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{flag} not found: {path}")
  if os.path.isdir(path):
    return _open_folder(path, flag)
  suffix = os.path.splitext(path)[1].lower()
  if suffix == FROZEN_GRAPH_SUFFIX:
    return FrozenGraph(path)
  if suffix == TFLITE_SUFFIX:
    return TFLite(path, num_threads)
  if suffix == ONNX_SUFFIX:
    return Onnx(path, num_threads)
  raise ValueError(f"{flag} {path}: expected a directory or a file ending in "
                   f"{', '.join(MODEL_SUFFIXES)}")


def run_once(export, images, num_threads=2):
  """Opens `export` (a path open_model takes, or a frozen GraphDef), runs it
  on `images` once and closes it: the agreement checks and tests' way."""
  if isinstance(export, tf.compat.v1.GraphDef):
    model = FrozenGraph(export)
  else:
    model = open_model(export, num_threads)
  with model:
    return model(images)


class WithBatchAxis(_Runtime):
  """A model exported without a batch axis (--input_shape H,W,3, the TF1
  project's option), seen as a model of batch 1 (its output already has
  the batch axis: the served function adds it)."""

  def __init__(self, model):
    self._model = model
    self.input_shape = (1, *model.input_shape)
    self.input_dtype = model.input_dtype

  def __call__(self, images):
    return self._model(images[0])

  def close(self):
    self._model.close()


def with_batch_axis(model):
  """`model`, or a WithBatchAxis of it when its input has no batch axis."""
  return WithBatchAxis(model) if len(model.input_shape) == 3 else model
