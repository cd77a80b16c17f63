r"""Trains a segmentation model from a pipeline config.

  python train.py --config_path configs/icnet_mobilenet_v2_synthetic_128.config \
      --logdir runs/demo [--num_steps 300] [--strategy one_device|mirrored|multi_worker]
      [--split train_aug | --input_pattern 'data/x/train-*.tfrecord,more/*.tfrecord']

Restarting with the same --logdir resumes from the latest checkpoint. A run
holds <logdir>/train.lock while it runs: a second train.py on that logdir
refuses; the lock of a run that was killed is taken over.

Multi-worker: start the same command on every worker with --strategy
multi_worker, the same --logdir (on a filesystem they all see) and each
worker's TF_CONFIG, e.g. for the second of two:

  TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
              "task": {"type": "worker", "index": 1}}' python train.py ...

Worker 0 (the chief) writes checkpoints, summaries and pipeline.config.
"""

from absl import flags

from fast_seg.data import dataset_info
from fast_seg.training import run_settings
from fast_seg.training import train_lib
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import cli

cli.define_config_flags()
cli.define_input_flags("train_input_reader")
flags.DEFINE_string("logdir", None, "Checkpoints, TensorBoard events, as-run config.")
flags.DEFINE_integer("num_steps", None,
                     "Overrides train_config.num_steps (and num_epochs); >= 1.")
flags.DEFINE_enum("strategy", "one_device", list(run_settings.STRATEGIES),
                  "tf.distribute strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_bool("image_summaries", False,
                  "The TF1 project's flag: input / ground truth / prediction "
                  "overlays in TensorBoard at every checkpoint (sets "
                  "train_config.image_summary_every_n_steps when it is 0).")
flags.mark_flags_as_required(["logdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  cli.check_output_dir(FLAGS.logdir, "--logdir")
  config = cli.load_config(FLAGS.config_path)
  for line in dataset_info.override_globs(
      config.train_input_reader, "train_input_reader", FLAGS.input_pattern, FLAGS.split):
    print(line, flush=True)
  train_config = config.train_config
  if FLAGS.image_summaries and not train_config.image_summary_every_n_steps:
    train_config.image_summary_every_n_steps = (
        train_config.checkpoint_every_n_steps)
  result = train_lib.train(config, FLAGS.logdir, num_steps=FLAGS.num_steps,
                           strategy=FLAGS.strategy)
  print(f"Training done at step {result['step']}; checkpoints in {FLAGS.logdir}")


def command():
  """The fast-seg-train command (pyproject.toml), and python train.py in a checkout."""
  cli.run(main, user_errors=(trainer_lib.TrainingDivergedError,), usage=__doc__)


if __name__ == "__main__":
  command()
