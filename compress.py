"""Prunes filters (L1 norm, Li et al. 2016) to a smaller filter_scale.

  python compress.py --config_path configs/X.config --checkpoint runs/X \
      --output_dir pruned/X --filter_scale 0.5 [--plot] [--soft]
  python compress.py ... --schedule 1.0,0.75,0.5 --finetune_steps 2000
  python compress.py ... --group_scales block3=0.75,block4=0.5 [--filter_scale 0.9]

Writes the pruned checkpoint (ckpt-0), the pipeline.config of the smaller
model starting from it, and a report of channels, params and FLOPs before
and after; with --schedule, one folder per stage, fine-tuned in between.
Then train the pruned model:
  python train.py --config_path pruned/X/pipeline.config --logdir runs/X_0.5
"""

from absl import flags

from fast_seg.compression import compress_lib
from fast_seg.utils import cli

cli.define_config_flags()
flags.DEFINE_string("checkpoint", None,
                    "Checkpoint prefix (runs/X/ckpt-300) or a train dir (its "
                    "latest), trained with --config_path.")
flags.DEFINE_string("output_dir", None, "Destination folder.")
flags.DEFINE_float("filter_scale", None,
                   "New width multiplier in (0, 1], e.g. 0.5 halves every "
                   "prunable layer.")
flags.DEFINE_string("group_scales", None,
                    "Per-group widths, e.g. block3=0.75,block4=0.5 (groups: "
                    "the backbone's stages and 'head'); the other groups "
                    "follow --filter_scale (default: the current one).")
flags.DEFINE_string("schedule", None,
                    "Progressive pruning, e.g. 1.0,0.75,0.5 (decreasing).")
flags.DEFINE_integer("finetune_steps", 0,
                     "With --schedule: training steps after each stage.")
flags.DEFINE_bool("soft", False,
                  "Zero the pruned filters instead of removing them.")
flags.DEFINE_bool("plot", False,
                  "Write plots/<group>.png: sorted filter norms and the cut.")
flags.DEFINE_string("input_shape", None,
                    "N,H,W,3 for the FLOPs (default: eval padded size or the "
                    "train crop).")
flags.mark_flags_as_required(["checkpoint", "output_dir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.group_scales is not None and FLAGS.schedule is not None:
    raise ValueError("--group_scales applies to one stage, not --schedule")
  if (FLAGS.group_scales is None and
      (FLAGS.filter_scale is None) == (FLAGS.schedule is None)):
    raise ValueError("pass exactly one of --filter_scale and --schedule "
                     "(or --group_scales)")
  if FLAGS.finetune_steps < 0:
    raise ValueError(f"--finetune_steps must be >= 0, got {FLAGS.finetune_steps}")
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  config = cli.load_config(FLAGS.config_path)
  input_shape = (cli.parse_shape(FLAGS.input_shape, 4, "--input_shape")
                 if FLAGS.input_shape else None)
  if FLAGS.schedule is not None:
    compress_lib.progressive(
        config, FLAGS.checkpoint, FLAGS.output_dir,
        compress_lib.parse_schedule(FLAGS.schedule), FLAGS.finetune_steps,
        soft=FLAGS.soft, plot=FLAGS.plot, input_shape=input_shape)
  else:
    if FLAGS.finetune_steps:
      raise ValueError("--finetune_steps applies to --schedule; after "
                       "--filter_scale, train with the written pipeline.config")
    group_scales = (compress_lib.parse_group_scales(FLAGS.group_scales)
                    if FLAGS.group_scales is not None else None)
    compress_lib.prune(config, FLAGS.checkpoint, FLAGS.output_dir,
                       FLAGS.filter_scale, soft=FLAGS.soft, plot=FLAGS.plot,
                       input_shape=input_shape, new_group_scales=group_scales)
  print(f"Wrote {FLAGS.output_dir}/pipeline.config; train the pruned model with "
        f"train.py --config_path {FLAGS.output_dir}/pipeline.config")


if __name__ == "__main__":
  cli.run(main)
