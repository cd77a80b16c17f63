r"""Runs an exported model on images or a video: label PNGs, overlays, latency.

  python predict.py --model exported/X --input 'photos/*.jpg' --output_dir predictions/ \
      [--crop 0,0] [--resize H,W] [--fit resize|letterbox] [--overlay_alpha 0.5] \
      [--palette dataset_info.json|distinct] [--num_threads 2] [--video_output auto] \
      [--fps N] [--max_frames N]

--model is an export dir, a SavedModel dir, a frozen .pb, a .tflite or an
.onnx file; --input a directory, a glob or a video (needs the [video] extra:
pip install 'fast_seg[video]'), which becomes <video>_overlay.mp4 (and a GIF
preview for a short clip).
"""

from absl import flags

from fast_seg.tools import predict
from fast_seg.tools import predict_geometry
from fast_seg.utils import cli

flags.DEFINE_string("model", None,
                    "Export dir, SavedModel dir, frozen .pb, .tflite or .onnx.")
flags.DEFINE_string("input", None, "Directory of images, a glob or a video file.")
flags.DEFINE_string("output_dir", None, "Where label maps and overlays go.")
flags.DEFINE_string("crop", None,
                    "top,bottom: image rows removed before the model (labelled "
                    "255 in the output); the road project's start,-stop form "
                    "(150,-100) means the same as 150,100.")
flags.DEFINE_string("resize", None,
                    "H,W the model is fed; only for a model without a fixed size.")
flags.DEFINE_enum("fit", "resize", list(predict_geometry.FITS),
                  "An image whose aspect differs from a fixed-size model's "
                  "input: resize (to the input; the model sees it "
                  "stretched, measured the more accurate) or letterbox "
                  "(scaled to fit, aspect kept, the rest padded grey). "
                  "Either way the output is resized back: labels and "
                  "overlays have the image's own size and aspect.")
flags.DEFINE_float("overlay_alpha", 0.5, "Opacity of the colours in the overlays.")
flags.DEFINE_string("palette", None,
                    "dataset_info.json whose palette colours the overlays, or "
                    "'distinct' (a distinct hue per class, the dataset's "
                    "class names); default: the dataset_info.json beside the "
                    "model (the dataset's own colours), else distinct hues.")
flags.DEFINE_integer("num_threads", 2, "CPU threads of the TFLite / ONNX runtimes.")
flags.DEFINE_float("threshold", 0.5,
                   "Foreground probability of a binary model exported with "
                   "--output probabilities.")
flags.mark_flags_as_required(["model", "input", "output_dir"])
flags.DEFINE_enum("on_error", "skip", ["skip", "fail"],
                  "An unreadable image or video frame: skip it, go on and exit "
                  "2 at the end listing it, or fail (stop at once).")
flags.DEFINE_string("video_output", "auto",
                    "What a video becomes: auto (an mp4, plus a GIF preview "
                    "when the clip is at most 15 s), none (only the latency), "
                    "or a comma list of mp4 (<video>_overlay.mp4, the input's "
                    "frame rate), gif (<video>_overlay.gif: <= 10 fps, <= 480 "
                    "px wide, the first 15 s) and frames (a label and overlay "
                    "PNG per frame).")
flags.DEFINE_float("fps", None,
                   "Frame rate of the written mp4 / GIF (default: the input's).")
flags.DEFINE_integer("max_frames", 0,
                     "Stop after this many video frames or images (0: all).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  result = predict.predict(
      FLAGS.model, FLAGS.input, FLAGS.output_dir,
      crop=predict_geometry.parse_crop(FLAGS.crop) if FLAGS.crop else None,
      resize=(cli.parse_shape(FLAGS.resize, 2, "--resize") if FLAGS.resize
              else None),
      alpha=FLAGS.overlay_alpha, palette_path=FLAGS.palette,
      num_threads=FLAGS.num_threads, threshold=FLAGS.threshold,
      on_error=FLAGS.on_error, video_output=FLAGS.video_output,
      fps=FLAGS.fps, max_frames=FLAGS.max_frames, fit=FLAGS.fit)
  for path in result["outputs"]:
    print(f"Wrote {path}")
  if result["pngs"]:
    print(f"Wrote label maps and overlays to {FLAGS.output_dir}")
  skipped = result["num_skipped"]
  if skipped:
    # Exit 2: a script must notice that not every input was predicted.
    raise ValueError(f"{skipped} of {skipped + len(result['names'])} inputs "
                     f"skipped: {'; '.join(result['skipped'][:5])}")


def command():
  """The fast-seg-predict command (pyproject.toml), and python predict.py in a checkout."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
