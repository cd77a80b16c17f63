"""Evaluates checkpoints: mIoU, per-class IoU, pixel and mean accuracy.

  python eval.py --config_path configs/X.config --train_dir runs/X --eval_dir runs/X/eval
      [--checkpoint runs/X/ckpt-300] [--timeout 600] [--split test | --input_pattern 'd/*.tfrecord']

Without --checkpoint and --timeout the latest checkpoint in --train_dir is
evaluated once; with --timeout every new checkpoint is evaluated until none
arrives for that many seconds or the final step is done. Unless the config
sets eval_config.num_visualizations (0: none), the first 3 images are also
drawn as image | ground truth | prediction PNGs in
--eval_dir/visualizations/step_N.
"""

from absl import flags

from fast_seg.data import dataset_info
from fast_seg.evaluation import eval_lib
from fast_seg.training import pipeline_check
from fast_seg.utils import cli

cli.define_config_flags()
cli.define_input_flags("eval_input_reader")
flags.DEFINE_string("train_dir", None, "Training logdir with checkpoints.")
flags.DEFINE_string("eval_dir", None, "Where metrics.json, summaries and PNGs go.")
flags.DEFINE_string("checkpoint", None, "Evaluate only this checkpoint.")
flags.DEFINE_float("timeout", None, "Seconds to wait for each new checkpoint.")
flags.DEFINE_bool("image_summaries", False,
                  "The TF1 project's flag: image | ground truth | prediction "
                  "panels also in TensorBoard (eval_config.image_summaries; "
                  "3 panels unless eval_config.num_visualizations is set).")
flags.mark_flags_as_required(["eval_dir"])
FLAGS = flags.FLAGS

# Overlays written when the config does not say: someone evaluating a model
# (a zoo model above all) wants to see its output, as the OD API's eval and
# mmsegmentation's --show-dir show it. Not the proto default: validation
# during training reads the same field and would write them every time.
DEFAULT_NUM_VISUALIZATIONS = 3


def main(argv):
  del argv
  cli.check_output_dir(FLAGS.eval_dir, "--eval_dir")
  config = cli.load_config(FLAGS.config_path)
  for line in dataset_info.override_globs(
      config.eval_input_reader, "eval_input_reader", FLAGS.input_pattern, FLAGS.split):
    print(line, flush=True)
  eval_config = config.eval_config
  if FLAGS.image_summaries:
    eval_config.image_summaries = True
  if (not eval_config.HasField("num_visualizations")
      or (FLAGS.image_summaries and not eval_config.num_visualizations)):
    eval_config.num_visualizations = DEFAULT_NUM_VISUALIZATIONS
  pipeline_check.check(config, "eval")
  results = eval_lib.evaluate(config, FLAGS.train_dir, FLAGS.eval_dir,
                              checkpoint=FLAGS.checkpoint, timeout=FLAGS.timeout)
  last = results[-1]
  print(f"mIoU {100 * last['miou']:.2f} at step {last['step']}; "
        f"metrics in {FLAGS.eval_dir}/{eval_lib.METRICS_FILE}")
  if eval_config.num_visualizations:
    print("overlays (image | ground truth | prediction) in "
          f"{eval_lib.visualizations_dir(FLAGS.eval_dir, last['step'])}")


def command():
  """The fast-seg-eval command (pyproject.toml), and python eval.py in a checkout."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
