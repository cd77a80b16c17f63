"""Finishers: TF1 fields that map together, once every block was read.

Some TF1 values mean something only with others (the branch loss weights
with use_auxiliary_loss, the fine-tune checkpoint with its type, the loss's
ignore label with eval's), and may sit in different blocks of the file, so
their rules only hold them (rules.hold); each finisher then writes what
they mean together and reports each of them.
"""

from fast_seg.protos import train_pb2
from fast_seg.tools.migrate_config import values

# TF1 ICNet's defaults (protos/icnet.proto), fast_seg's order of aux_weights.
_BRANCH_WEIGHTS = {"main_branch_loss_weight": 1.0,
                   "second_branch_loss_weight": 0.4,  # 1/8 head
                   "first_branch_loss_weight": 0.4}  # 1/16 head
_PSPNET_AUX_WEIGHT = 0.4  # hard-coded in TF1's model builder


def _finish_loss(m):
  """TF1 built the auxiliary heads only with use_auxiliary_loss (default
  false); fast_seg always builds them, and a weight of 0 removes one."""
  use_aux, use_fields, use_path = m.held_value("use_auxiliary_loss", values.boolean, False)
  weights = {name: m.held_value(name, values.number, default)
             for name, default in _BRANCH_WEIGHTS.items()}
  loss = m.arch.child("loss")
  is_icnet = m.arch.path == "model.icnet"
  if use_aux and is_icnet:
    loss.set("main_weight", weights["main_branch_loss_weight"][0])
    aux = [weights["second_branch_loss_weight"][0],
           weights["first_branch_loss_weight"][0]]
  else:
    aux = [_PSPNET_AUX_WEIGHT if use_aux else 0.0] * (2 if is_icnet else 1)
  for name, (_, fields, path) in weights.items():
    if fields and not use_aux:
      m.skip(path, fields[-1], "not used: TF1 ignored it without "
             "use_auxiliary_loss: true (main weight 1, no auxiliary losses)")
  loss.message.ClearField("aux_weights")
  loss.message.aux_weights.extend(aux)
  if not use_aux:
    m.check(use_path or f"{m.arch.path}.loss.use_auxiliary_loss",
            use_fields[-1] if use_fields else None,
            f"-> {loss.path}.aux_weights: {', '.join(map(str, aux))}: no "
            "auxiliary losses, as in TF1 (a weight of 0 removes that head)")


def _finish_fine_tune(m):
  """TF1's 'classification' checkpoints were ImageNet tf-slim files, which
  fast_seg reads through feature_extractor.weights_path; its segmentation
  types restored every layer, as fast_seg's SEGMENTATION does."""
  path_value, path_fields, path_path = m.held_value("fine_tune_checkpoint", values.string, "")
  kind, kind_fields, kind_path = m.held_value("fine_tune_checkpoint_type", values.string, "")
  path_field = path_fields[-1] if path_fields else None
  kind_field = kind_fields[-1] if kind_fields else None
  if not path_value:
    if kind_field:
      m.skip(kind_path, kind_field, "not used: no fine_tune_checkpoint is set")
    return
  if kind == "classification":
    written = m.arch.child("feature_extractor").set("weights_path", path_value)
    m.check(path_path, path_field, f"-> {written}: TF1's 'classification' "
            "checkpoints are ImageNet tf-slim files (resnet_v1_50.ckpt, "
            "mobilenet_v2_1.0_224.ckpt), which fast_seg reads from weights_path "
            "(its fine_tune_checkpoint reads fast_seg checkpoints); check this path")
    m.skip(kind_path, kind_field, "nothing to write: weights_path restores "
           "the trunk only, as TF1's 'classification' type did")
  elif kind in ("segmentation", "segmentation-finetune"):
    train = m.config.train_config
    train.fine_tune_checkpoint = path_value
    train.fine_tune_checkpoint_type = train_pb2.TrainConfig.SEGMENTATION
    m.check(path_path, path_field, "-> train_config.fine_tune_checkpoint: fast_seg "
            "cannot read TF1 model.ckpt-N checkpoints (docs/migrating.md): point "
            "it at a fast_seg checkpoint (a run's logdir, or compress.py's output "
            "for a pruned model); an ImageNet .ckpt goes to "
            f"{m.arch.path}.feature_extractor.weights_path instead")
    m.check(kind_path, kind_field, "-> train_config.fine_tune_checkpoint_type: "
            "SEGMENTATION; fast_seg's fine-tuning starts at step 0")
  else:
    given = f"'{kind}' is" if kind_field else "is not set, and"
    note = (f"no equivalent: fine_tune_checkpoint_type {given} none of "
            "classification, segmentation, segmentation-finetune")
    m.skip(path_path, path_field, note)
    m.skip(kind_path or "train_config.fine_tune_checkpoint_type", kind_field, note)


def _finish_num_steps(m):
  if not m.config.HasField("train_config"):
    return
  steps, fields, path = m.held_value("num_steps", values.integer, 0)
  if steps > 0:
    m.config.train_config.num_steps = steps
  else:
    m.skip(path or "train_config.num_steps", fields[-1] if fields else None,
           "no equivalent: 0 (TF1's default) trained until stopped; fast_seg "
           "needs a length: its default num_steps 10000 applies; set num_steps "
           "or num_epochs")


def _finish_regularization(m):
  add, fields, path = m.held_value("add_regularization_loss", values.boolean, True)
  if not fields:
    return
  if add:
    m.skip(path, fields[-1], "nothing to write: fast_seg always adds the "
           "regularizer's loss")
    return
  hyperparams = m.arch.child("hyperparams")
  hyperparams.message.ClearField("regularizer")
  m.check(path, fields[-1], f"-> {hyperparams.path}.regularizer removed: TF1 "
          "added no regularization loss")


def _finish_ignore_label(m):
  """TF1 had one ignore label for the loss and one for eval; fast_seg one."""
  label, fields, _ = m.held_value("ignore_label", values.integer, None)
  if fields:
    m.arch.set("ignore_label", label)
  label = m.arch.message.ignore_label
  eval_label, eval_fields, eval_path = m.held_value("eval_ignore_label", values.integer, None)
  if not eval_fields:
    return
  if eval_label == label:
    m.skip(eval_path, eval_fields[-1], f"nothing to write: fast_seg evaluates "
           f"with {m.arch.path}.ignore_label ({label})")
  else:
    m.skip(eval_path, eval_fields[-1], f"no equivalent: fast_seg uses "
           f"{m.arch.path}.ignore_label ({label}) for loss and metrics")


FINISHERS = (_finish_loss, _finish_fine_tune, _finish_num_steps,
             _finish_regularization, _finish_ignore_label)
