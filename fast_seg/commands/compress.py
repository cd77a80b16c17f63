r"""Prunes filters (L1 norm, Li et al. 2016) to a smaller filter_scale.

  python compress.py --config_path configs/X.config --checkpoint runs/X \
      --output_dir pruned/X --filter_scale 0.5 [--plot] [--soft]
  python compress.py ... --schedule 1.0,0.75,0.5 --finetune_steps 2000
  python compress.py ... --group_scales block3=0.75,block4=0.5 [--filter_scale 0.9]
  python compress.py ... --analyze [--ratios 0.75,0.5,0.25] [--eval_examples 50]
      [--runtime tflite_int8 --input_shape 1,1024,2048,3]
  python compress.py ... --target_latency_ms 80 --runtime tflite_int8 \
      --input_shape 1,1024,2048,3 [--finetune_steps 600]
  python compress.py ... --target_flops 2e9 [--finetune_steps 600]
  python compress.py ... --target_latency_ratio 0.7 [--groups head,stage2]
  python compress.py ... --target_flops_ratio 0.5 [--ratios 0.5,0.25]

Writes the pruned checkpoint (ckpt-0), the pipeline.config of the smaller
model starting from it, and a report of channels, params and FLOPs before
and after; with --schedule, one folder per stage, fine-tuned in between.
--analyze prunes each width group alone at each ratio and writes the
sensitivity table, plot and JSON (no checkpoint). --target_latency_ms and
--target_flops choose per-group widths from that table that meet the budget
as measured on the runtime (budget_report.md: widths, cost and mIoU before
and after); the *_ratio budgets are fractions of the unpruned model's cost
as the same run measures it. The table costs one model per group and ratio
(about a minute each for ICNet-MobileNetV2 1.0 timed at 1024x2048 on 2
shared cores; docs/compression.md): --groups and --ratios narrow it.
Then train the pruned model:
  python train.py --config_path pruned/X/pipeline.config --logdir runs/X_0.5
"""

from absl import flags

from fast_seg.compression import budget
from fast_seg.compression import compress_lib
from fast_seg.compression import cost as cost_lib
from fast_seg.compression import sensitivity
from fast_seg.export import latency
from fast_seg.training import pipeline_check
from fast_seg.utils import cli
from fast_seg.utils import output_files

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
                     "Training steps after each --schedule stage, or after a "
                     "budget's pruning (the report then adds the mIoU after "
                     "them); 0: none. Not with --filter_scale or --analyze: "
                     "train the written pipeline.config instead.")
flags.DEFINE_bool("soft", False,
                  "Zero the pruned filters instead of removing them.")
flags.DEFINE_bool("plot", False,
                  "Write plots/<group>.png: sorted filter norms and the cut.")
flags.DEFINE_string("input_shape", None,
                    "N,H,W,3 for the FLOPs and latency (default: eval padded "
                    "size or the train crop).")
flags.DEFINE_bool("analyze", False,
                  "Sensitivity analysis: prune each width group alone at "
                  "each of --ratios, evaluate --eval_examples eval images.")
flags.DEFINE_string("ratios", "0.75,0.5,0.25",
                    "--analyze / budgets: fractions of a group's width tried "
                    "(one model per group and ratio).")
flags.DEFINE_string("groups", None,
                    "--analyze / budgets: the width groups to prune, e.g. "
                    "head,stage2 (default: every group: the backbone's "
                    "stages and 'head'); with --sensitivity, the saved "
                    "table's rows of these groups.")
flags.DEFINE_integer("eval_examples", 50,
                     "--analyze / budgets: eval images per evaluation (0: all).")
flags.DEFINE_float("target_latency_ms", None,
                   "Budget: the pruned model's latency on --runtime at "
                   "--input_shape, measured here.")
flags.DEFINE_float("target_flops", None,
                   "Budget: the pruned model's FLOPs at --input_shape "
                   "(multiply-add = 2), e.g. 2e9.")
flags.DEFINE_float("target_latency_ratio", None,
                   "Budget: a fraction of the unpruned model's latency, as "
                   "measured in this run on --runtime at --input_shape, "
                   "e.g. 0.7; the report gives it in ms.")
flags.DEFINE_float("target_flops_ratio", None,
                   "Budget: a fraction of the unpruned model's FLOPs at "
                   "--input_shape, e.g. 0.5; the report gives it in GFLOPs.")
flags.DEFINE_enum("runtime", None, list(latency.RUNTIMES),
                  "Runtime the latency is measured on (default tflite_int8 "
                  "with a latency budget; with --analyze, adds a latency "
                  "column, else FLOPs).")
flags.DEFINE_float("tolerance", budget.DEFAULT_TOLERANCE,
                   "Budgets: met when measured <= target x (1 + tolerance).")
flags.DEFINE_integer("latency_runs", 5, "Timed runs per latency measurement.")
flags.DEFINE_string("sensitivity", None,
                    "Budgets: the sensitivity.json of an earlier --analyze (or "
                    "budget) of this checkpoint with the same cost, reused "
                    "instead of measured again.")
flags.mark_flags_as_required(["checkpoint", "output_dir"])
FLAGS = flags.FLAGS


LATENCY_BUDGETS = ("--target_latency_ms", "--target_latency_ratio")
FLOPS_BUDGETS = ("--target_flops", "--target_flops_ratio")
BUDGETS = LATENCY_BUDGETS + FLOPS_BUDGETS


def _budget_value(mode):
  return getattr(FLAGS, mode[2:])


def _mode():
  """The one thing asked for: schedule, analyze, budget or prune (widths)."""
  asked = [name for name, on in (
      ("--schedule", FLAGS.schedule is not None), ("--analyze", FLAGS.analyze),
      *((budget_flag, _budget_value(budget_flag) is not None)
        for budget_flag in BUDGETS)) if on]
  widths = FLAGS.filter_scale is not None or FLAGS.group_scales is not None
  if len(asked) + widths != 1:
    raise ValueError(
        "pass exactly one of --filter_scale (and/or --group_scales), "
        "--schedule, --analyze, " + ", ".join(BUDGETS[:-1]) + " and "
        + BUDGETS[-1] + (f"; got {', '.join(asked)}" if asked else ""))
  if FLAGS.finetune_steps < 0:
    raise ValueError(f"--finetune_steps must be >= 0, got {FLAGS.finetune_steps}")
  mode = asked[0] if asked else "--filter_scale"
  if FLAGS.finetune_steps and mode in ("--filter_scale", "--analyze"):
    raise ValueError("--finetune_steps applies to --schedule and budgets; "
                     "after --filter_scale, train with the written "
                     "pipeline.config")
  if FLAGS.sensitivity and mode not in BUDGETS:
    raise ValueError("--sensitivity applies to the budgets (--target_*)")
  if FLAGS.groups and mode not in BUDGETS + ("--analyze",):
    raise ValueError("--groups applies to --analyze and the budgets "
                     "(--target_*)")
  if FLAGS.runtime and mode in FLOPS_BUDGETS:
    raise ValueError("--runtime applies to latency budgets and --analyze")
  return mode


def _cost(mode, config):
  """The cost.Cost of a budget or of --analyze's column."""
  shape = (cli.parse_shape(FLAGS.input_shape, 4, "--input_shape")
           if FLAGS.input_shape else compress_lib.default_input_shape(config))
  if mode in LATENCY_BUDGETS or FLAGS.runtime:
    return cost_lib.Cost(cost_lib.LATENCY, tuple(shape),
                         FLAGS.runtime or latency.TFLITE_INT8,
                         FLAGS.latency_runs)
  return cost_lib.Cost(cost_lib.FLOPS, tuple(shape))


def _budget(mode):
  """The budget.Budget of the flag given (GFLOPs for --target_flops)."""
  value = _budget_value(mode)
  if mode == "--target_flops":
    value /= 1e9
  return budget.Budget(value, ratio=mode.endswith("_ratio"), flag=mode)


def _analyze_or_budget(mode, config):
  ratios = sensitivity.parse_ratios(FLAGS.ratios)
  groups = (cli.parse_subset(FLAGS.groups, compress_lib.group_names(config),
                             "--groups") if FLAGS.groups else None)
  cost = _cost(mode, config)
  if mode == "--analyze":
    analysis = sensitivity.analyze(config, FLAGS.checkpoint, ratios,
                                   FLAGS.eval_examples, cost, groups=groups)
    paths = sensitivity.write(analysis, FLAGS.output_dir)
    print(f"Wrote {', '.join(paths)}")
    return
  budget.prune_to_budget(config, FLAGS.checkpoint, FLAGS.output_dir, cost,
                         _budget(mode), ratios, FLAGS.eval_examples,
                         FLAGS.tolerance, FLAGS.finetune_steps,
                         analysis=sensitivity.read(FLAGS.sensitivity)
                         if FLAGS.sensitivity else None, groups=groups)
  _print_next_step()


def _print_next_step():
  print(f"Wrote {FLAGS.output_dir}/pipeline.config; train the pruned model with "
        f"train.py --config_path {FLAGS.output_dir}/pipeline.config")


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  mode = _mode()
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  config = cli.load_config(FLAGS.config_path)
  pipeline_check.check(config, "compress")
  # Ctrl-C, SIGTERM or an error half way: the checkpoints, configs and
  # reports written so far go again, as cli.run's message says.
  with output_files.removed_on_failure(FLAGS.output_dir):
    _compress(mode, config)


def _compress(mode, config):
  """Runs the mode's work, writing into --output_dir."""
  if mode in ("--analyze",) + BUDGETS:
    _analyze_or_budget(mode, config)
    return
  input_shape = (cli.parse_shape(FLAGS.input_shape, 4, "--input_shape")
                 if FLAGS.input_shape else None)
  if mode == "--schedule":
    compress_lib.progressive(
        config, FLAGS.checkpoint, FLAGS.output_dir,
        compress_lib.parse_schedule(FLAGS.schedule), FLAGS.finetune_steps,
        soft=FLAGS.soft, plot=FLAGS.plot, input_shape=input_shape)
  else:
    group_scales = (compress_lib.parse_group_scales(FLAGS.group_scales)
                    if FLAGS.group_scales is not None else None)
    compress_lib.prune(config, FLAGS.checkpoint, FLAGS.output_dir,
                       FLAGS.filter_scale, soft=FLAGS.soft, plot=FLAGS.plot,
                       input_shape=input_shape, new_group_scales=group_scales)
  _print_next_step()


def command():
  """The fast-seg-compress command (pyproject.toml), and python compress.py in a checkout."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
