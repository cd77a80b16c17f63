"""tfmot magnitude pruning and quantization-aware training, train to export."""

import collections
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.model_optimization import tfmot_lib
from fast_seg.evaluation import eval_lib
from fast_seg.export import export_lib
from fast_seg.export import serving
from fast_seg.training import run_settings
from fast_seg.training import train_lib
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import checkpoint_util
from tests import helpers

PRUNING = ("magnitude_pruning { initial_sparsity: 0.0 final_sparsity: 0.5 "
           "begin_step: 0 end_step: 0 frequency: 2 power: 3 }")
QAT = "quantization_aware_training {}"
# Masks keep round(size * (1 - s)) weights; the smallest pruned kernel has 64.
SPARSITY_TOLERANCE = 0.01
CLASSIFIERS = {"icnet_classifier", "icnet_aux_1_8_classifier",
               "icnet_aux_1_16_classifier"}
INPUT_SHAPE = (1, 64, 64, 3)


def _config(data_dir, extra_train, num_steps, checkpoint_every=2):
  return helpers.pipeline_config(helpers.train_pipeline_text(
      data_dir, num_steps=num_steps, extra_train=extra_train,
      checkpoint_every=checkpoint_every))


def _kernel(reader, layer):
  return reader.get_tensor(f"model/{layer}/kernel/.ATTRIBUTES/VARIABLE_VALUE")


def _sparsity(values):
  return 1.0 - np.count_nonzero(values) / values.size


def _trainer(config, logdir):
  return trainer_lib.Trainer(config, str(logdir), run_settings.build_strategy("one_device"))


@pytest.fixture(scope="module")
def pruning_run(tiny_dataset, tmp_path_factory):
  """(config, logdir): a dense checkpoint at step 4, resumed with pruning to 6.

  ckpt-4 stands for a float run's last checkpoint (saved by a dense Trainer,
  untrained to save time). Pruning starts there (begin_step 4); masks are
  updated at steps 5 (sparsity 0.4375) and 6 (0.5), each checkpointed.
  """
  logdir = tmp_path_factory.mktemp("pruning_run")
  dense = _trainer(_config(tiny_dataset, "", num_steps=4), logdir)
  dense.restore_or_initialize()
  dense.step.assign(4)
  dense.manager.save(checkpoint_number=4)
  pruning = PRUNING.replace("begin_step: 0", "begin_step: 4").replace(
      "frequency: 2", "frequency: 1")
  config = _config(tiny_dataset, pruning, num_steps=6, checkpoint_every=1)
  train_lib.train(config, str(logdir))
  return config, str(logdir)


@pytest.fixture(scope="module")
def qat_run(tiny_dataset, tmp_path_factory):
  """(config, logdir, result) of a 1-step quantization-aware run.

  Seeded: the int8 agreement below is measured on a barely trained model,
  whose labels are near ties on many pixels; a fixed model keeps it stable.
  """
  tf.keras.utils.set_random_seed(7)
  logdir = tmp_path_factory.mktemp("qat_run")
  config = _config(tiny_dataset, QAT, num_steps=1)
  result = train_lib.train(config, str(logdir))
  return config, str(logdir), result


# -- config -------------------------------------------------------------------


def test_options_parse_and_build(tiny_dataset):
  config = _config(tiny_dataset, PRUNING, num_steps=10)
  pruning = config.train_config.magnitude_pruning
  assert (pruning.final_sparsity, pruning.frequency, pruning.power) == (0.5, 2, 3.0)
  assert tfmot_lib.validate(config.train_config) == tfmot_lib.MAGNITUDE_PRUNING
  # Defaults; end_step 0 is num_steps, rounded down to the last mask update.
  defaults = helpers.pipeline_config("train_config { magnitude_pruning {} }")
  pruning = defaults.train_config.magnitude_pruning
  assert (pruning.initial_sparsity, pruning.final_sparsity, pruning.begin_step,
          pruning.end_step, pruning.frequency, pruning.power,
          pruning.prune_classifiers) == (0.0, 0.5, 0, 0, 100, 3.0, False)
  schedule = tfmot_lib.pruning_schedule(pruning, 1050)
  assert (schedule.begin_step, schedule.end_step) == (0, 1000)
  should_prune, sparsity = schedule(tf.constant(1000, tf.int64))
  assert bool(should_prune) and float(sparsity) == pytest.approx(0.5)

  qat = _config(tiny_dataset, QAT, num_steps=2).train_config
  assert tfmot_lib.validate(qat) == tfmot_lib.QUANTIZATION_AWARE_TRAINING
  assert tfmot_lib.validate(helpers.pipeline_config(
      helpers.train_pipeline_text(tiny_dataset)).train_config) is None


@pytest.mark.parametrize("extra, field", [
    ("magnitude_pruning { final_sparsity: 1.0 }", "final_sparsity"),
    ("magnitude_pruning { final_sparsity: -0.1 }", "final_sparsity"),
    ("magnitude_pruning { initial_sparsity: 0.6 final_sparsity: 0.5 }",
     "initial_sparsity"),
    ("magnitude_pruning { frequency: 0 }", "frequency"),
    ("magnitude_pruning { begin_step: 8 end_step: 8 }", "end_step"),
    ("magnitude_pruning { begin_step: 6 frequency: 2 }", r"end_step \(0: num_steps\)"),
    ("magnitude_pruning { frequency: 20 }", "frequency"),
    ("magnitude_pruning {} quantization_aware_training {}",
     "magnitude_pruning and train_config.quantization_aware_training"),
    ("quantization_aware_training {} precision: MIXED_FLOAT16",
     "precision: MIXED_FLOAT16"),
])
def test_bad_options_name_the_field(tiny_dataset, extra, field):
  config = _config(tiny_dataset, extra, num_steps=6)
  with pytest.raises(ValueError, match=field):
    tfmot_lib.validate(config.train_config)


def test_trainer_rejects_bad_options(tiny_dataset, tmp_path):
  config = _config(tiny_dataset, "magnitude_pruning { final_sparsity: 1.5 }", 4)
  with pytest.raises(ValueError, match=r"magnitude_pruning\.final_sparsity"):
    train_lib.train(config, str(tmp_path / "run"))
  # tfmot's cross-replica updates cannot run inside an XLA function.
  config = _config(tiny_dataset, PRUNING + " use_xla: true", 4)
  with pytest.raises(ValueError, match="use_xla needs the one_device strategy"):
    trainer_lib.Trainer(config, str(tmp_path / "xla"),
                        run_settings.build_strategy("mirrored"))


# -- magnitude pruning --------------------------------------------------------


def test_pruning_reaches_final_sparsity_in_checkpoint(pruning_run):
  config, logdir = pruning_run
  path = tf.train.latest_checkpoint(logdir)
  assert path.endswith("ckpt-6")
  reader = tf.train.load_checkpoint(path)
  shapes = reader.get_variable_to_shape_map()
  kernels = sorted({k.split("/")[1] for k in shapes
                    if k.startswith("model/") and "/kernel/" in k
                    and "OPTIMIZER_SLOT" not in k})
  pruned = [name for name in kernels if name not in CLASSIFIERS]
  assert len(pruned) > 40
  for name in pruned:
    assert _sparsity(_kernel(reader, name)) == pytest.approx(
        0.5, abs=SPARSITY_TOLERANCE), name
  for name in CLASSIFIERS:
    assert _sparsity(_kernel(reader, name)) < SPARSITY_TOLERANCE, name
  assert int(reader.get_tensor(
      "compression/icnet_psp_conv/pruning_step/.ATTRIBUTES/VARIABLE_VALUE")) == 6

  # Under model/, exactly the keys of a dense run: every weight of the plain
  # model by layer name.
  model = model_builder.build(config.model)
  assert {k for k in shapes if k.startswith("model/")} == {
      checkpoint_util.weight_key(l, w)
      for l in model.keras_model.layers for w in l.weights}


def test_pruning_resume_restores_masks_and_steps(pruning_run, tmp_path):
  config, logdir = pruning_run
  # A fresh run: the Conv2D layers but the classifiers are wrapped, sharing
  # the float model's layers; pruning_step 0 and no mask.
  trainer = _trainer(config, tmp_path / "fresh")
  compression, model = trainer.compression, trainer.model
  convs = {l.name for l in model.keras_model.layers
           if isinstance(l, keras.layers.Conv2D)}
  assert set(compression.wrappers) == convs - CLASSIFIERS
  assert not any("depthwise" in name for name in compression.wrappers)
  assert compression.layers["icnet_psp_conv"] is model.keras_model.get_layer(
      "icnet_psp_conv")
  assert set(compression.variables) == {
      l.name for l in model.keras_model.layers if l.weights}
  assert set(compression.state["icnet_psp_conv"]) == {
      "mask", "threshold", "pruning_step"}
  # The optimizer saves its slots by position: same order as a dense run.
  assert ([v.name for v in trainer.trainable_variables]
          == [v.name for v in model.keras_model.trainable_variables])
  assert trainer.restore_or_initialize() == 0
  compression.start(0)
  wrapper = compression.wrappers["icnet_cff1_low_conv"]
  assert int(wrapper.pruning_step.numpy()) == 0
  assert compression.mask_sparsity() == 0.0

  # Resuming at ckpt-5 (mask update at sparsity 0.4375) restores the masks.
  resumed = tmp_path / "resumed"
  resumed.mkdir()
  for path in tf.io.gfile.glob(f"{logdir}/ckpt-5.*"):
    shutil.copy(path, resumed)
  tf.compat.v1.train.update_checkpoint_state(str(resumed), str(resumed / "ckpt-5"))
  reader = tf.train.load_checkpoint(str(resumed / "ckpt-5"))
  trainer = _trainer(config, resumed)
  assert trainer.restore_or_initialize() == 5
  trainer.compression.start(5)
  wrapper = trainer.compression.wrappers["icnet_cff1_low_conv"]
  mask = wrapper.pruning_vars[0][1].numpy()
  np.testing.assert_array_equal(mask, reader.get_tensor(
      "compression/icnet_cff1_low_conv/mask/.ATTRIBUTES/VARIABLE_VALUE"))
  assert _sparsity(mask) == pytest.approx(0.4375, abs=SPARSITY_TOLERANCE)
  assert int(wrapper.pruning_step.numpy()) == 5
  assert trainer.compression.mask_sparsity() == pytest.approx(0.4375, abs=1e-3)
  # The dense checkpoint it started from has no pruning state.
  dense = tf.train.load_checkpoint(f"{logdir}/ckpt-4")
  assert not any(k.startswith("compression/") for k in dense.get_variable_to_shape_map())


def test_eval_restores_pruned_checkpoint_by_layer_name(pruning_run, tmp_path):
  config, logdir = pruning_run
  result = eval_lib.evaluate(config, logdir, str(tmp_path))[-1]
  assert result["step"] == 6 and 0.0 <= result["miou"] <= 1.0
  model = model_builder.build(config.model)  # plain, no wrappers
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights], logdir)
  kernel = model.inference_model.get_layer("icnet_cff1_low_conv").kernel.numpy()
  assert _sparsity(kernel) == pytest.approx(0.5, abs=SPARSITY_TOLERANCE)


def test_export_strips_pruning_and_reports_sparsity(pruning_run, tmp_path, capsys):
  config, logdir = pruning_run
  info = export_lib.export(config, logdir, str(tmp_path / "pruned"), INPUT_SHAPE)
  printed = capsys.readouterr().out
  report = json.loads((tmp_path / "pruned" / "export_info.json").read_text())[
      "compression"]
  assert report == info["compression"]
  assert report["technique"] == tfmot_lib.MAGNITUDE_PRUNING
  layers = report["conv_kernels"]
  assert layers["icnet_psp_conv"]["sparsity"] == pytest.approx(
      0.5, abs=SPARSITY_TOLERANCE)
  assert layers["icnet_classifier"]["sparsity"] < SPARSITY_TOLERANCE
  assert layers["mobilenet_v2_expanded_conv_depthwise"]["sparsity"] < SPARSITY_TOLERANCE
  assert "icnet_psp_conv" in printed and "all conv kernels" in printed
  # Plain convs only: no mask or pruning op in the exported graphs.
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString(
      (tmp_path / "pruned" / serving.FROZEN_GRAPH_NAME).read_bytes())
  assert not any("prune" in node.name or "mask" in node.name
                 for node in graph_def.node)
  variables = tf.train.list_variables(
      str(tmp_path / "pruned" / "saved_model" / "variables" / "variables"))
  assert not any("mask" in name or "threshold" in name for name, _ in variables)

  # The same model before pruning began: ckpt-4.
  dense = export_lib.export(config, f"{logdir}/ckpt-4", str(tmp_path / "dense"),
                            INPUT_SHAPE)["compression"]
  assert dense["sparsity"] < SPARSITY_TOLERANCE
  # Dense storage either way (the batch-norm folding of the frozen graph
  # sees other constants, hence a few % apart); the zeros show in gzip.
  assert report["frozen_graph_bytes"] == pytest.approx(
      dense["frozen_graph_bytes"], rel=0.1)
  assert report["frozen_graph_gzip_bytes"] < 0.8 * dense["frozen_graph_gzip_bytes"]
  assert (report["saved_model_variables_gzip_bytes"]
          < 0.8 * dense["saved_model_variables_gzip_bytes"])
  print(f"pruned: {report['sparsity']:.3f} sparse, gzip frozen graph "
        f"{report['frozen_graph_gzip_bytes']} B vs dense "
        f"{dense['frozen_graph_gzip_bytes']} B (raw {report['frozen_graph_bytes']} B), "
        f"variables {report['saved_model_variables_gzip_bytes']} B vs "
        f"{dense['saved_model_variables_gzip_bytes']} B "
        f"(raw {report['saved_model_variables_bytes']} B)")
  print(printed)


# -- quantization-aware training ----------------------------------------------


def test_qat_trains_and_eval_reads_float_weights(qat_run, tmp_path):
  config, logdir, result = qat_run
  assert result["step"] == 1 and np.isfinite(result["total_loss"])
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(logdir))
  keys = reader.get_variable_to_shape_map()
  assert "compression/icnet_psp_conv/kernel_min/.ATTRIBUTES/VARIABLE_VALUE" in keys
  # eval.py restores the float weights into the plain model by layer name.
  result = eval_lib.evaluate(config, logdir, str(tmp_path))[-1]
  assert result["step"] == 1


@pytest.mark.slow  # overlaps the default suite; make test-all
def test_qat_export_converts_to_int8_tflite(qat_run, tmp_path):
  interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
  config, logdir, _ = qat_run
  info = export_lib.export(config, logdir, str(tmp_path), INPUT_SHAPE)
  assert info["compression"]["technique"] == tfmot_lib.QUANTIZATION_AWARE_TRAINING
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString((tmp_path / serving.FROZEN_GRAPH_NAME).read_bytes())
  assert any(node.op.startswith("FakeQuantWithMinMaxVars") for node in graph_def.node)

  converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved_model"))
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  tflite_model = converter.convert()
  interpreter = interpreter_module.Interpreter(model_content=tflite_model)
  interpreter.allocate_tensors()
  tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  conv_ops = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
  assert len(conv_ops) > 40
  for op in conv_ops:  # weights and activations alike
    assert tensors[op["inputs"][1]]["dtype"] == np.int8, op
    assert tensors[op["inputs"][0]]["dtype"] == np.int8, op
  print(f"TFLite int8 model: {len(tflite_model)} B; ops:",
        dict(collections.Counter(op["op_name"] for op in ops)))

  images = np.random.default_rng(0).integers(0, 256, INPUT_SHAPE, dtype=np.uint8)
  interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
  interpreter.invoke()
  labels = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
  assert labels.shape == INPUT_SHAPE[:3] and labels.dtype == np.int32
  assert labels.min() >= 0 and labels.max() < 6
  # Close to the fake-quant SavedModel it came from.
  serve = tf.saved_model.load(str(tmp_path / "saved_model")).signatures[
      "serving_default"]
  expected = serve(inputs=tf.constant(images))["predictions"].numpy()
  assert np.mean(labels == expected) > 0.9


def test_qat_export_needs_a_qat_checkpoint(pruning_run, tiny_dataset, tmp_path):
  config = _config(tiny_dataset, QAT, num_steps=4)
  dense = f"{pruning_run[1]}/ckpt-4"
  with pytest.raises(ValueError, match="no quantization_aware_training state"):
    export_lib.export(config, dense, str(tmp_path), INPUT_SHAPE)
