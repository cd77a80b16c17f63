r"""Exports a trained checkpoint for servers and phones, each format checked.

  python export.py --config_path configs/X.config --trained_checkpoint runs/X \
      --output_dir exported/X --input_shape 1,1024,2048,3 \
      [--formats saved_model,frozen_graph,tflite,coreml,onnx] \
      [--quantize none|float16|dynamic|int8] [--output labels|probabilities|colours] \
      [--input_type uint8|float32] [--random_weights] [--pad_to_shape 1025,2049] \
      [--labels_method auto|boundary|resize|nearest] \
      [--labels_dtype int32|int64|uint16|uint8] [--contract fast_seg|tf1|keras_coreml]

The graph takes `inputs` [N,H,W,3] pixels (0..255) and returns `predictions`
at the input size: preprocessing, the main head only and the resize are
inside. Every format is run once on an eval image and compared with the TF
function (export_report.json). --contract keeps the interface of the
projects fast_seg replaces (docs/export.md#contracts): `tf1` is the TF1
fast-semantic-segmentation frozen graph (int64 [N,H,W,1] labels, zero
padding; with --input_shape H,W,3 or -1 sizes as it allowed), `keras_coreml`
the Keras Core ML models (probabilities [C,H,W] named `output`).
"""

from absl import flags

from fast_seg.export import export_lib
from fast_seg.export import full_resolution_labels
from fast_seg.export import serving
from fast_seg.training import pipeline_check
from fast_seg.utils import cli

cli.define_config_flags()
flags.DEFINE_string("trained_checkpoint", None,
                    "Checkpoint prefix (runs/X/ckpt-300) or a train dir (its latest).")
flags.DEFINE_string("output_dir", None, "Destination folder.")
flags.DEFINE_string("input_shape", None,
                    "N,H,W,3 of the exported input, or H,W,3 (no batch axis); "
                    "-1 for a dynamic size (saved_model, frozen_graph, onnx).")
flags.DEFINE_string("pad_to_shape", None,
                    "H,W the input is padded to before the network (optional).")
flags.DEFINE_string("formats", ",".join(export_lib.DEFAULT_FORMATS),
                    f"Comma-separated: {', '.join(export_lib.format_names())} "
                    "(saved_model and frozen_graph are always written).")
flags.DEFINE_string("quantize", "none",
                    "TFLite: none (float32), float16, dynamic or int8.")
flags.DEFINE_integer("num_calibration_images", 100,
                     "Eval images that calibrate --quantize int8.")
flags.DEFINE_enum("output", "labels", list(serving.OUTPUT_KINDS),
                  "labels (int32 ids), probabilities (float32 softmax) or "
                  "colours (uint8 RGB from the dataset palette).")
flags.DEFINE_enum("input_type", "uint8", list(serving.INPUT_TYPES),
                  "Pixel type of `inputs` (values 0..255 either way).")
flags.DEFINE_enum("labels_method", full_resolution_labels.AUTO,
                  [full_resolution_labels.AUTO, *full_resolution_labels.METHODS],
                  "How labels / colours reach the input size: boundary "
                  "(exact; only the cells along class boundaries are "
                  "interpolated), resize (exact; every logit map resized), "
                  "nearest (approximate: the low-resolution arg-max "
                  "upsampled). auto: per format, the exact one measured "
                  "faster on its runtime (boundary in TensorFlow and float "
                  "TFLite; resize in int8 TFLite, ONNX and Core ML).")
flags.DEFINE_bool("fast_labels", False, "Same as --labels_method nearest.")
flags.DEFINE_enum("labels_dtype", None, list(serving.LABELS_DTYPES),
                  "The type of --output labels instead of the contract's "
                  "(int32; tf1: int64); uint8 holds up to 256 classes in a "
                  "quarter of the bytes.")
flags.DEFINE_bool("random_weights", False,
                  "Export an untrained model of the same architecture (for "
                  "on-device speed tests); no checkpoint needed.")
flags.DEFINE_enum("contract", "fast_seg", list(serving.CONTRACTS),
                  "The interface: fast_seg; tf1 (int64 [N,H,W,1] labels, zero "
                  "padding); keras_coreml (Core ML probabilities [C,H,W] "
                  "named `output`).")
flags.mark_flags_as_required(["output_dir", "input_shape"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  config = cli.load_config(FLAGS.config_path)
  pipeline_check.check(config, "export")
  input_shape = cli.parse_input_shape(FLAGS.input_shape)
  pad_to_shape = (cli.parse_shape(FLAGS.pad_to_shape, 2, "--pad_to_shape")
                  if FLAGS.pad_to_shape else None)
  formats = cli.parse_subset(FLAGS.formats, export_lib.format_names(), "--formats")
  info = export_lib.export(
      config, FLAGS.trained_checkpoint, FLAGS.output_dir, input_shape,
      pad_to_shape, formats=formats, quantize=FLAGS.quantize,
      output=FLAGS.output, input_type=FLAGS.input_type,
      random_weights=FLAGS.random_weights,
      num_calibration_images=FLAGS.num_calibration_images,
      labels_method=full_resolution_labels.from_flags(FLAGS.labels_method,
                                                      FLAGS.fast_labels),
      contract=FLAGS.contract, labels_dtype=FLAGS.labels_dtype)
  source = ("random weights" if info["random_weights"] else info["checkpoint"])
  print(f"Exported {source} to {FLAGS.output_dir}")
  print(f"  params: {info['params']:,}")
  print(f"  FLOPs:  {info['flops'] / 1e9:.2f} G per run of shape "
        f"{info['flops_input_shape']} (multiply-add = 2 FLOPs)")
  print(f"  formats: {', '.join(info['formats'])}; see "
        f"{FLAGS.output_dir}/{serving.REPORT_NAME}")


def command():
  """The fast-seg-export command (pyproject.toml), and python export.py in a checkout."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
