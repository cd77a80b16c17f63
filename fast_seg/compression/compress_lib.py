"""compress.py's work: prune a checkpoint to a smaller filter_scale.

One stage reads a checkpoint of the config's model (training checkpoints,
aux heads included), prunes every channel group by L1 norm to the widths of
the same config at the new `filter_scale` (and, per width group, the
scales of `new_group_scales`: feature_extractor.group_widths), and writes
  ckpt-0              the pruned weights (loads into the new model by name),
  pipeline.config     the config with `filter_scale` (+ group_widths) set and
                      `fine_tune_checkpoint` pointing at ckpt-0,
  compression_report.json / .md   channels per group and layer, params
                      and FLOPs before and after,
  plots/              with plot=True: sorted filter norms and the cut.
A schedule (1.0 -> 0.75 -> 0.5) runs stages in turn, fine-tuning between
them as the ICNet paper did.
"""

import collections
import copy
import json
import os
import time

from absl import logging
import tensorflow as tf

from fast_seg import feature_extractors
from fast_seg.builders import model_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.compression import filter_pruning
from fast_seg.compression import report as report_lib
from fast_seg.feature_extractors import base as extractor_base
from fast_seg.export import inference_graph
from fast_seg.protos import train_pb2
from fast_seg.training import train_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util

REPORT_NAME = "compression_report"
PLOT_DIR = "plots"

# One stage's models: the source, the pruned target and its config, and
# filter_pruning's plan (channel graph, keep masks, filter scores), rows, and
# the source's config.
_Pruned = collections.namedtuple(
    "_Pruned", ["source", "target", "config", "graph", "masks", "scores",
                "rows", "source_config"])


def check_scale(scale, flag="--filter_scale"):
  if not 0.0 < scale <= 1.0:
    raise ValueError(f"{flag} must be in (0, 1], got {scale}")
  return scale


def parse_schedule(text):
  """'1.0,0.75,0.5' -> [1.0, 0.75, 0.5], each in (0, 1], decreasing."""
  try:
    scales = [float(v) for v in text.split(",") if v.strip()]
  except ValueError:
    raise ValueError(f"--schedule must be comma-separated numbers, got "
                     f"'{text}'") from None
  if not scales:
    raise ValueError("--schedule is empty")
  for scale in scales:
    check_scale(scale, "--schedule")
  if any(b >= a for a, b in zip(scales, scales[1:])):
    raise ValueError(f"--schedule must decrease, got {scales}")
  return scales


def current_scale(pipeline_config):
  return _extractor_config(pipeline_config).filter_scale


def _extractor_config(pipeline_config):
  return config_util.get_model_config(pipeline_config.model).feature_extractor


def group_names(pipeline_config):
  """The width groups of the config's backbone: its stages, then 'head'."""
  extractor = feature_extractors.get(_extractor_config(pipeline_config).type)
  return tuple(extractor.stage_names) + (extractor_base.HEAD_GROUP,)


def group_scales(pipeline_config):
  """{group: scale} of every width group (group_widths, else filter_scale)."""
  fe = _extractor_config(pipeline_config)
  listed = {w.group: w.scale for w in fe.group_widths}
  return {g: listed.get(g, fe.filter_scale) for g in group_names(
      pipeline_config)}


def parse_group_scales(text):
  """'block3=0.75,block4=0.5' -> {'block3': 0.75, 'block4': 0.5}."""
  scales = {}
  for item in (v.strip() for v in text.split(",")):
    if not item:
      continue
    group, sep, value = item.partition("=")
    try:
      scale = float(value) if sep else None
    except ValueError:
      scale = None
    if scale is None or not group.strip():
      raise ValueError(f"--group_scales must be GROUP=SCALE pairs separated "
                       f"by commas, e.g. block4=0.5, got '{text}'")
    if group.strip() in scales:
      raise ValueError(f"--group_scales gives {group.strip()} twice")
    scales[group.strip()] = check_scale(scale, f"--group_scales {group}")
  if not scales:
    raise ValueError("--group_scales is empty")
  return scales


def with_scale(pipeline_config, scale, new_group_scales=None):
  """A copy of the config whose model has `filter_scale` = scale.

  Groups in `new_group_scales` get those scales; a group the config lists
  in group_widths keeps min(its scale, `scale`), so it never widens. Only
  groups whose scale differs from `scale` are written to group_widths.
  """
  config = copy.deepcopy(pipeline_config)
  fe = _extractor_config(config)
  scales = {w.group: min(w.scale, scale) for w in fe.group_widths}
  scales.update(new_group_scales or {})
  fe.filter_scale = scale
  del fe.group_widths[:]
  order = {g: i for i, g in enumerate(group_names(config))}
  for group in sorted(scales, key=lambda g: order.get(g, len(order))):
    if abs(scales[group] - scale) > 1e-9:
      fe.group_widths.add(group=group, scale=scales[group])
  return config


def default_input_shape(pipeline_config):
  """The size FLOPs are counted at: eval's padded size, else the train crop."""
  eval_config = pipeline_config.eval_config
  if eval_config.padded_height and eval_config.padded_width:
    return (1, eval_config.padded_height, eval_config.padded_width, 3)
  size = preprocessor_builder.fixed_output_size(
      pipeline_config.train_config.data_augmentation_options)
  if size:
    return (1, size[0], size[1], 3)
  raise ValueError("cannot tell the input size for FLOPs from the config "
                   "(no eval_config.padded_height/width, no fixed-size "
                   "augmentation); pass --input_shape N,H,W,3")


def count_flops(model, input_shape):
  """FLOPs of the exported inference graph (multiply-add = 2)."""
  serve = inference_graph.build_inference_function(model, input_shape)
  return inference_graph.count_flops(
      inference_graph.freeze(serve.get_concrete_function()))


def _weighted_layers(model):
  return [layer for layer in model.keras_model.layers if layer.weights]


def load_model(pipeline_config, checkpoint):
  """The config's model with every training layer restored from `checkpoint`.

  Raises:
    ValueError: the checkpoint does not fit the config (the message lists the
      mismatched variables by name).
  """
  model = model_builder.build(pipeline_config.model)
  checkpoint_util.restore_layers(_weighted_layers(model), checkpoint)
  return model


def save_checkpoint(model, output_dir):
  """Writes output_dir/ckpt-0 (+ the `checkpoint` index file); returns it."""
  checkpoint = checkpoint_util.make_checkpoint(model.keras_model)
  manager = tf.train.CheckpointManager(checkpoint, output_dir, max_to_keep=1)
  return checkpoint_util.save(manager, 0)


def _scale_before(pipeline_config, filter_scale, new_group_scales=None):
  """The checkpoint's filter_scale; ValueError unless the new widths narrow.

  Groups of `new_group_scales` must be width groups of the backbone and no
  wider than in the checkpoint's model; so must filter_scale unless every
  group is listed.
  """
  check_scale(filter_scale)
  scale_before = current_scale(pipeline_config)
  names = group_names(pipeline_config)
  new_group_scales = new_group_scales or {}
  unknown = sorted(set(new_group_scales) - set(names))
  if unknown:
    raise ValueError(f"--group_scales: unknown group(s) {', '.join(unknown)}; "
                     f"the groups of this model are: {', '.join(names)}")
  if filter_scale > scale_before + 1e-9 and set(names) - set(new_group_scales):
    raise ValueError(f"--filter_scale {filter_scale} is wider than the "
                     f"checkpoint's model ({scale_before}); pruning only "
                     "narrows")
  before = group_scales(pipeline_config)
  for group, scale in new_group_scales.items():
    if scale > before[group] + 1e-9:
      raise ValueError(f"--group_scales {group}={scale} is wider than the "
                       f"checkpoint's model ({before[group]}); pruning only "
                       "narrows")
  return scale_before


def _prune_models(pipeline_config, checkpoint, filter_scale, soft,
                  new_group_scales=None):
  """The _Pruned stage of `checkpoint` at `filter_scale` (+ group scales)."""
  return prune_loaded(load_model(pipeline_config, checkpoint),
                      pipeline_config, filter_scale, soft, new_group_scales)


def prune_loaded(source, pipeline_config, filter_scale, soft=False,
                 new_group_scales=None):
  """The _Pruned stage of the loaded model `source` of `pipeline_config`.

  The pruned model has the widths of `filter_scale` and `new_group_scales`
  (soft: the source's widths, the pruned filters zeroed) and the source's
  surviving weights; `source` is left as it was, so one loaded model can
  be pruned many ways (sensitivity analysis, budgeted search).
  """
  target_config = with_scale(pipeline_config, filter_scale, new_group_scales)
  shaped_by = model_builder.build(target_config.model)
  graph, masks, scores = filter_pruning.plan(source.keras_model,
                                             shaped_by.keras_model)
  output_config = copy.deepcopy(pipeline_config) if soft else target_config
  target = model_builder.build(output_config.model) if soft else shaped_by
  rows = filter_pruning.apply(source.keras_model, target.keras_model, graph,
                              masks, soft=soft)
  return _Pruned(source, target, output_config, graph, masks, scores, rows,
                 pipeline_config)


def _save_pruned(target, output_config, output_dir):
  """Writes ckpt-0 and the pipeline.config that fine-tunes from it."""
  os.makedirs(output_dir, exist_ok=True)
  pruned_path = save_checkpoint(target, output_dir)
  # Proof that it loads: a fresh model of the written config restores every
  # weight by name, nothing missing or mismatched.
  check = model_builder.build(output_config.model)
  checkpoint_util.restore_layers(_weighted_layers(check), pruned_path)
  train_config = output_config.train_config
  train_config.fine_tune_checkpoint = os.path.abspath(pruned_path)
  train_config.fine_tune_checkpoint_type = train_pb2.TrainConfig.SEGMENTATION
  config_util.save_pipeline_config(output_config, output_dir)
  return pruned_path


def _stage_report(checkpoint, pruned_path, soft, scale_before, input_shape,
                  pruned):
  """compression_report.json's dict, without plots and seconds."""
  source, target = pruned.source, pruned.target
  report = {
      "checkpoint": checkpoint,
      "output_checkpoint": pruned_path,
      "soft": soft,
      "filter_scale_before": scale_before,
      "filter_scale_after": current_scale(pruned.config),
      "group_scales_before": group_scales(pruned.source_config),
      "group_scales_after": group_scales(pruned.config),
      "input_shape": list(input_shape),
      "params_before": source.keras_model.count_params(),
      "params_after": target.keras_model.count_params(),
      "inference_params_before": source.inference_model.count_params(),
      "inference_params_after": target.inference_model.count_params(),
      "flops_before": count_flops(source, input_shape),
      "flops_after": count_flops(target, input_shape),
      "groups": _with_width_groups(
          filter_pruning.group_table(pruned.graph, pruned.masks), source),
      "layers": pruned.rows,
  }
  if soft:
    report["zeroed_channels"] = int(sum(
        r["before"] - r["after"] for r in report["groups"]))
  return report


def _with_width_groups(rows, model):
  """Adds each channel group's width group: its first conv's trunk stage."""
  stage_of = {name: io.name for io in model.feature_extractor.stage_io
              for name in io.layer_names}
  for row in rows:
    row["width_group"] = stage_of.get(row["convs"][0],
                                      extractor_base.HEAD_GROUP)
  return rows


def written_config(output_dir):
  """The pipeline.config a stage wrote into output_dir."""
  return config_util.load_pipeline_config(
      os.path.join(output_dir, config_util.PIPELINE_CONFIG_NAME))


def _write_report(report, output_dir, log):
  """compression_report.json and .md; each markdown line to `log`."""
  report_lib.write_json_and_markdown(
      report, report_lib.report_markdown(report),
      os.path.join(output_dir, REPORT_NAME), log)


def prune(pipeline_config, checkpoint, output_dir, filter_scale, soft=False,
          plot=False, input_shape=None, log=print, new_group_scales=None):
  """One pruning stage; returns the report dict.

  Args:
    pipeline_config: the config the checkpoint was trained with.
    checkpoint: a checkpoint prefix or a train dir (its latest).
    output_dir: where ckpt-0, pipeline.config, the report and plots go.
    filter_scale: the new width multiplier, in (0, current]; None: the
      current one (with new_group_scales, to prune only those groups).
    soft: keep the shapes and zero the pruned filters (the written config
      keeps the current filter_scale).
    plot: write a PNG per channel group of its sorted filter norms.
    input_shape: (1, H, W, 3) for the FLOPs; default from the config.
    log: called with each report line.
    new_group_scales: {width group: scale} written to group_widths, e.g.
      {'block4': 0.5}; the other groups follow filter_scale.

  Raises:
    ValueError: a scale outside (0, current], an unknown group, or a
      checkpoint that does not fit the config (naming the variables).
  """
  if filter_scale is None:
    filter_scale = current_scale(pipeline_config)
  scale_before = _scale_before(pipeline_config, filter_scale,
                               new_group_scales)
  input_shape = tuple(input_shape or default_input_shape(pipeline_config))
  checkpoint = checkpoint_util.resolve_checkpoint(checkpoint)
  start = time.time()
  pruned = _prune_models(pipeline_config, checkpoint, filter_scale, soft,
                         new_group_scales)
  pruned_path = _save_pruned(pruned.target, pruned.config, output_dir)
  report = _stage_report(checkpoint, pruned_path, soft, scale_before,
                         input_shape, pruned)
  if plot:
    report["plots"] = report_lib.write_plots(
        pruned.graph, pruned.masks, pruned.scores,
        os.path.join(output_dir, PLOT_DIR))
  report["seconds"] = round(time.time() - start, 1)
  _write_report(report, output_dir, log)
  return report


def _stage_scales(schedule, start_scale):
  """The schedule's scales below the model's own; ValueError if none."""
  scales = [s for s in schedule if s < start_scale - 1e-9]
  if schedule[0] > start_scale + 1e-9:
    raise ValueError(f"--schedule starts at {schedule[0]} but the checkpoint's "
                     f"model has filter_scale {start_scale}")
  if not scales:
    raise ValueError(f"--schedule {schedule} has no scale below the model's "
                     f"filter_scale {start_scale}")
  return scales


def finetune(config, stage_dir, finetune_steps, train, report, log):
  """Trains a stage's pruned model; returns its latest checkpoint.

  report['finetune'] records the steps, folder, checkpoint and last losses,
  and `config` then starts from the fine-tuned checkpoint.
  """
  train_dir = os.path.join(stage_dir, "train")
  tune = copy.deepcopy(config)
  tune.train_config.num_steps = finetune_steps
  log(f"fine-tuning {finetune_steps} steps in {train_dir}")
  result = train(tune, train_dir)
  source = tf.train.latest_checkpoint(train_dir)
  report["finetune"] = {"steps": finetune_steps, "train_dir": train_dir,
                        "checkpoint": source,
                        "losses": {k: float(v) for k, v in result.items()
                                   if k != "step"}}
  config.train_config.fine_tune_checkpoint = os.path.abspath(source)
  return source


def _write_summary(pipeline_config, config, output_dir, start_scale, scales,
                   reports):
  """The last stage's config (full num_steps) and the schedule's summary."""
  final = copy.deepcopy(config)
  final.train_config.num_steps = pipeline_config.train_config.num_steps
  config_util.save_pipeline_config(final, output_dir)
  summary = {"schedule": [start_scale] + scales,
             "stages": [{"filter_scale": r["filter_scale_after"],
                         "params": r["params_after"], "flops": r["flops_after"],
                         "checkpoint": r.get("finetune", {}).get(
                             "checkpoint", r["output_checkpoint"])}
                        for r in reports]}
  with open(os.path.join(output_dir, REPORT_NAME + ".json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  logging.info("progressive pruning done: %s", summary)


def progressive(pipeline_config, checkpoint, output_dir, schedule,
                finetune_steps, soft=False, plot=False, input_shape=None,
                log=print, train=None):
  """Prunes through `schedule`, fine-tuning `finetune_steps` after each stage.

  Stage k (scale s) writes output_dir/stage_k_scale_s/ (the pruned ckpt-0,
  its pipeline.config and report) and fine-tunes into its train/ folder;
  the next stage prunes from that. output_dir/pipeline.config is the last
  stage's config, starting from its fine-tuned (or pruned) checkpoint, with
  the original num_steps for the full retraining.

  Args:
    train: train(config, train_dir) -> losses; train_lib.train when None.

  Returns:
    list of the stages' reports.
  """
  train = train or train_lib.train
  start_scale = current_scale(pipeline_config)
  scales = _stage_scales(schedule, start_scale)
  config, source = pipeline_config, checkpoint
  reports = []
  for k, scale in enumerate(scales, 1):
    stage_dir = os.path.join(output_dir, f"stage_{k}_scale_{scale:g}")
    log(f"== stage {k}/{len(scales)}: filter_scale {current_scale(config):g} "
        f"-> {scale:g}")
    report = prune(config, source, stage_dir, scale, soft=soft, plot=plot,
                   input_shape=input_shape, log=log)
    config = written_config(stage_dir)
    source = report["output_checkpoint"]
    if finetune_steps > 0:
      source = finetune(config, stage_dir, finetune_steps, train, report, log)
    reports.append(report)
  _write_summary(pipeline_config, config, output_dir, start_scale, scales,
                 reports)
  return reports
