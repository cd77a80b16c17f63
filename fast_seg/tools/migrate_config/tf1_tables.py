"""The TF1 project's schema, as rules: one table per TF1 message.

The tables follow that project's protos (protos/*.proto of
oandrienko/fast-semantic-segmentation), leaves first, and say for each of
its fields where fast_seg takes it, or why it does not; PIPELINE is the
top. A TF1 field missing here is reported as unknown, so a field is never
dropped silently. docs/migrating.md has the renames as a table.
"""

from fast_seg.protos import hyperparams_pb2
from fast_seg.tools.migrate_config import rules
from fast_seg.tools.migrate_config import values

_TF_DATA = "not needed (tf.data)"
_PATH_NOTE = ("kept as written; check this path; fast_seg reads TFRecords with "
              "the same keys; see docs/migrating.md")

# ----------------------------------------------------------------------------
# Rules with their own logic.

_EXTRACTORS = {"dilated_resnet50": "resnet_v1_50",
               "dilated_mobilenet": "mobilenet_v2"}
# The TF1 project's single_stage_icnet_1.0_1025_mobilenet_v2.config.
_MISSPELT = {"dialted_mobilenet": "dilated_mobilenet"}


def _extractor_type(m, fields, out, path):
  field = values.last(m, fields, path)
  name = values.string(m, field, path)
  if name in _MISSPELT:
    m.check(path, field, f"read as '{_MISSPELT[name]}' (a misspelling in a "
            "TF1 sample config, which TF1's builder refused)")
  name = _MISSPELT.get(name, name)
  if name not in _EXTRACTORS:
    raise m.bad(field, path, f"a TF1 feature extractor ({', '.join(_EXTRACTORS)})")
  out.set("type", _EXTRACTORS[name])


def _pooling_factors(m, fields, out, path):
  """TF1 pooled to size/factor, so whole factors are fast_seg's bin counts."""
  factors = [values.number(m, f, path) for f in fields]
  if all(f.is_integer() and f >= 1 for f in factors):
    for factor in factors:
      out.set("pyramid_bins", int(factor))
    return
  for field in fields:
    m.skip(path, field, "no equivalent: fast_seg's pyramid_bins are whole bin "
           "counts; the model's default bins apply")


def _architecture(name, table):
  """Rule: `icnet` or `pspnet`, the one architecture of the model."""

  def rule(m, fields, out, path):
    if m.arch is not None or len(fields) > 1:
      raise m.bad(fields[-1], path, "one architecture in model { }")
    m.arch = out.child(name)
    rules.apply_table(m, table, values.block(m, fields[0], path), m.arch, path)

  return rule


def _adam(m, fields, out, path):
  """tf.train.AdamOptimizer's epsilon was 1e-8 (Keras': 1e-7)."""
  adam = out.child("adam_optimizer")
  adam.set("epsilon", 1e-8)
  m.check(path, fields[-1], f"-> {adam.path}: epsilon 1e-8 written, "
          "tf.train.AdamOptimizer's default (Keras': 1e-7)")
  rules.map_block(_OPTIMIZER_LEARNING_RATE, "adam_optimizer")(m, fields, out, path)


def _input_paths(m, fields, out, path):
  for field in fields:
    written = out.set("tf_record_input_path", values.string(m, field, path))
    m.check(path, field, f"-> {written}: {_PATH_NOTE}")


def _reader_epochs(m, fields, out, path):
  field = values.last(m, fields, path)
  if values.integer(m, field, path) == 0:
    m.skip(path, field, "nothing to write: 0 repeated the data until training "
           "stopped, as fast_seg's training reader does (eval reads once)")
  else:
    m.skip(path, field, "no equivalent in the reader: set train_config."
           "num_epochs instead of num_steps (counted in dataset_info.json)")


def _variance_distribution(uniform):
  distributions = hyperparams_pb2.VarianceScalingInitializer
  return distributions.UNIFORM if uniform else distributions.TRUNCATED_NORMAL


def _variance_mode(m, field, path):
  text = values.string(m, field, path)
  modes = hyperparams_pb2.VarianceScalingInitializer.Mode
  if text in modes.keys():
    return modes.Value(text)
  if text.isdigit() and int(text) in modes.values():
    return int(text)
  raise m.bad(field, path, f"one of {', '.join(modes.keys())}")

# ----------------------------------------------------------------------------
# The tables, one per TF1 message (its protos/*.proto), leaves first.

_L2_NOTE = ("halved: Keras' L2 adds weight * sum(w^2), slim's "
            "l2_regularizer(weight) half of that")

_HYPERPARAMS = {
    "regularizer": rules.map_block({
        "l1_regularizer": rules.map_block({
            "weight": rules.write_to("weight", values.number, default=1.0),
        }, "l1_regularizer"),
        "l2_regularizer": rules.map_block({
            "weight": rules.write_to("weight", values.number, default=1.0,
                                     convert=lambda w: w / 2, note=_L2_NOTE),
        }, "l2_regularizer"),
    }, "regularizer"),
    "initializer": rules.map_block({
        "truncated_normal_initializer": rules.map_block({
            "mean": rules.write_to("mean", values.number),
            "stddev": rules.write_to("stddev", values.number, default=1.0),
        }, "truncated_normal_initializer"),
        "variance_scaling_initializer": rules.map_block({
            "factor": rules.write_to("scale", values.number),
            "uniform": rules.write_to("distribution", values.boolean,
                                      convert=_variance_distribution),
            "mode": rules.write_to("mode", _variance_mode),
        }, "variance_scaling_initializer"),
    }, "initializer"),
    "batch_norm": rules.map_block({
        "decay": rules.write_to("decay", values.number, default=0.9997),
        "epsilon": rules.write_to("epsilon", values.number),
        "train": rules.write_to("train", values.boolean),
        "center": rules.fixed_at(
            True, values.boolean, "fast_seg's batch norms always learn beta",
            "fast_seg's batch norms always learn beta (center)"),
        "scale": rules.fixed_at(
            True, values.boolean, "fast_seg's batch norms always learn gamma",
            "fast_seg's batch norms always learn gamma (scale)"),
    }, "batch_norm"),
}

_LOSS = {
    "classification_loss": rules.map_block({
        "softmax": rules.map_block({}, "softmax_cross_entropy"),
    }),
    "use_auxiliary_loss": rules.hold("use_auxiliary_loss"),
    "ignore_label": rules.hold("ignore_label"),
    "upsample_logits": rules.write_to("upsample_logits", values.boolean),
}

_ARCHITECTURE = {
    "num_classes": rules.write_to("num_classes", values.integer),
    "feature_extractor": rules.map_block({"type": _extractor_type}, "feature_extractor"),
    "filter_scale": rules.write_to("feature_extractor.filter_scale", values.number),
    "pooling_factors": _pooling_factors,
    "hyperparams": rules.map_block(_HYPERPARAMS, "hyperparams"),
    "loss": rules.map_block(_LOSS, "loss"),
}

_ICNET = {
    **_ARCHITECTURE,
    "main_branch_loss_weight": rules.hold("main_branch_loss_weight"),
    "second_branch_loss_weight": rules.hold("second_branch_loss_weight"),
    "first_branch_loss_weight": rules.hold("first_branch_loss_weight"),
    "pretrain_single_branch_mode": rules.fixed_at(
        False, values.boolean, "false is ICNet's normal three-branch training",
        "to pretrain the trunk on one branch, train model { pspnet } and seed "
        "ICNet from it with fine_tune_checkpoint + CLASSIFICATION "
        "(configs/icnet_resnet50_1.0_cityscapes_1024.config)"),
    "mobile_ops_only": rules.drop("not needed: it avoided tf.add_n for TF1 mobile "
                                  "converters; export.py checks every format it writes"),
}

_MODEL = {"icnet": _architecture("icnet", _ICNET),
          "pspnet": _architecture("pspnet", _ARCHITECTURE)}


def _learning_rate(new, defaults, fields):
  return rules.map_block({name: rules.write_to(name, kind, default=defaults.get(name))
                          for name, kind in fields}, new)


_LEARNING_RATE = {
    "constant_learning_rate": _learning_rate(
        "constant_learning_rate", {"learning_rate": 0.002},
        [("learning_rate", values.number)]),
    "exponential_decay_learning_rate": _learning_rate(
        "exponential_decay_learning_rate",
        {"initial_learning_rate": 0.002, "decay_steps": 4000000},
        [("initial_learning_rate", values.number), ("decay_steps", values.integer),
         ("decay_factor", values.number), ("staircase", values.boolean)]),
    # TF1 decayed to 0 (end_learning_rate=0 in its builder), as fast_seg does.
    "polynomial_decay_learning_rate": _learning_rate(
        "polynomial_decay_learning_rate",
        {"initial_learning_rate": 0.0001, "decay_steps": 4000000},
        [("initial_learning_rate", values.number), ("decay_steps", values.integer),
         ("power", values.number)]),
}
_OPTIMIZER_LEARNING_RATE = {
    "learning_rate": rules.map_block(_LEARNING_RATE, "learning_rate"),
}

_OPTIMIZER = {
    "momentum_optimizer": rules.map_block({
        **_OPTIMIZER_LEARNING_RATE,
        "momentum_optimizer_value": rules.write_to("momentum", values.number),
    }, "momentum_optimizer"),
    "adam_optimizer": _adam,
}


def _augmentation(new, table):
  """Rule: each TF1 preprocessor_step member becomes one fast_seg
  data_augmentation_options entry, in the file's order."""

  def rule(m, fields, out, path):
    for field in fields:
      step = out.add("data_augmentation_options").child(new)
      rules.apply_table(m, table, values.block(m, field, path), step, path)

  return rule


_CHANNELS = "fast_seg's images have 3 channels and labels 1"
_PREPROCESSOR_STEP = {
    "random_image_scale": _augmentation("random_scale", {
        "min_scale_ratio": rules.write_to("min_scale_ratio", values.number),
        "max_scale_ratio": rules.write_to("max_scale_ratio", values.number),
    }),
    "random_image_crop": _augmentation("random_crop", {
        "crop_height": rules.write_to("crop_height", values.integer),
        "crop_width": rules.write_to("crop_width", values.integer),
        "images_channel_dim": rules.fixed_at(3, values.integer, _CHANNELS, _CHANNELS),
        "labels_channel_dim": rules.fixed_at(1, values.integer, _CHANNELS, _CHANNELS),
        "int_seed": rules.drop("no equivalent: fast_seg's augmentations take no seed"),
    }),
    "random_horizontal_flip": _augmentation("random_horizontal_flip", {}),
    "set_fixed_image_size": rules.drop(
        f"{_TF_DATA}: it set static shapes for TF1's queues; batches get "
        "their size from random_crop"),
    "aspect_ratio_image_resize": rules.drop(
        "no equivalent: nearest are fixed_resize and resize_with_pad "
        "(docs/augmentations.md)"),
}

_TRAIN = {
    "batch_size": rules.write_to("batch_size", values.integer, default=32),
    "num_steps": rules.hold("num_steps"),
    "optimizer": rules.map_block(_OPTIMIZER, "optimizer"),
    "preprocessor_step": rules.map_block(_PREPROCESSOR_STEP),
    "fine_tune_checkpoint": rules.hold("fine_tune_checkpoint"),
    "fine_tune_checkpoint_type": rules.hold("fine_tune_checkpoint_type"),
    "freeze_fine_tune_backbone": rules.write_to("freeze_backbone", values.boolean),
    "add_regularization_loss": rules.hold("add_regularization_loss"),
    "keep_checkpoint_every_n_hours": rules.drop(
        "no equivalent: fast_seg keeps the last max_checkpoints_to_keep "
        "checkpoints, and the best one with eval_every_n_steps"),
    "quantize_with_delay": rules.drop(
        "no equivalent: train_config.quantization_aware_training {} quantizes "
        "from the first step of the run it is set in; to start after N float "
        "steps, train N steps, then resume with it set (docs/compression.md)"),
    "batch_queue_capacity": rules.drop(_TF_DATA),
    "num_batch_queue_threads": rules.drop(_TF_DATA),
    "prefetch_queue_capacity": rules.drop(_TF_DATA),
    "num_queue_threads": rules.drop(_TF_DATA),
}

_READER = {
    "tf_record_input_reader": rules.map_block({"input_path": _input_paths}),
    "shuffle": rules.write_to("shuffle", values.boolean),
    "shuffle_buffer": rules.write_to("shuffle_buffer_size", values.integer),
    "num_epochs": _reader_epochs,
    "num_readers": rules.drop(f"{_TF_DATA}; files read in parallel: num_parallel_reads"),
    "num_parallel_calls": rules.drop(f"{_TF_DATA}; fast_seg's num_parallel_calls 0 "
                                     "lets tf.data tune it"),
    "queue_capacity": rules.drop(_TF_DATA),
    "min_after_dequeue": rules.drop(_TF_DATA),
    "num_examples": rules.drop("not needed: fast_seg counts the examples in the "
                               "dataset_info.json beside the TFRecords"),
}

_EVAL = {
    "num_examples": rules.write_to("num_examples", values.integer),
    "ignore_label": rules.hold("eval_ignore_label"),
    "eval_input_type": rules.map_block({
        "padded_eval_input": rules.map_block({
            "height": rules.write_to("padded_height", values.integer),
            "width": rules.write_to("padded_width", values.integer),
        }),
        "cropped_eval_input": rules.drop(
            "no equivalent: TF1 scored one random crop per image; fast_seg "
            "scores whole images (padded_height / padded_width) or slides a "
            "window over them (sliding_window)"),
    }),
    "num_visualizations": rules.write_to("num_visualizations", values.integer),
    "eval_interval_secs": rules.drop("no equivalent: eval.py --timeout waits for "
                                     "each new checkpoint"),
    "max_evals": rules.drop("no equivalent: eval.py evaluates every new checkpoint "
                            "until --timeout passes without one"),
    "visualization_export_dir": rules.drop("no equivalent: eval.py writes its PNGs "
                                           "under --eval_dir/visualizations"),
    "visualize_groundtruth": rules.fixed_at(
        True, values.boolean, "fast_seg's eval PNGs always show the ground truth",
        "fast_seg's eval PNGs always show the ground truth"),
    "crop_height": rules.drop("no equivalent: if this was the padded eval size, "
                              "set eval_config.padded_height"),
    "crop_width": rules.drop("no equivalent: if this was the padded eval size, "
                             "set eval_config.padded_width"),
}

PIPELINE = {
    "model": rules.map_block(_MODEL, "model"),
    "train_config": rules.map_block(_TRAIN, "train_config"),
    "train_input_reader": rules.map_block(_READER, "train_input_reader"),
    "eval_config": rules.map_block(_EVAL, "eval_config"),
    "eval_input_reader": rules.map_block(_READER, "eval_input_reader"),
}
