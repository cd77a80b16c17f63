"""migrate_config: TF1 fast-semantic-segmentation configs become fast_seg
configs that load and build, and every TF1 field not carried over is named.

The TF1 configs below are written for this test in the schema of that
project's protos (icnet.proto, pspnet.proto, train.proto, ...), one per model
family it shipped a sample config for.
"""

import os
import subprocess
import sys

import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2
from fast_seg.tools import migrate_config
from fast_seg.utils import config_util
from tests import helpers

LOGITS = fields.PredictionFields.logits


def _hyperparams():
  return """
        hyperparams {
            batch_norm { train: true scale: true center: true decay: 0.9997 epsilon: 0.00001 }
            regularizer { l2_regularizer { weight: 0.0001 } }
            initializer { variance_scaling_initializer {} }
        }"""


def _readers():
  return """
train_input_reader: {
    num_examples: 2975
    shuffle: true
    tf_record_input_reader { input_path: "/tmp/cityscapes_train.record" }
    num_readers: 25
}
eval_config: {
    num_examples: 500
    eval_input_type { padded_eval_input { height: 1025 width: 2049 } }
}
eval_input_reader: {
    shuffle: false
    tf_record_input_reader { input_path: '/tmp/cityscapes_val.record' }
    num_readers: 1
}
"""


def _steps(crop_height, crop_width):
  return f"""
    preprocessor_step {{ random_image_scale {{ min_scale_ratio: 0.5 max_scale_ratio: 2.0 }} }}
    preprocessor_step {{
        random_image_crop {{
            crop_height: {crop_height}
            crop_width: {crop_width}
            images_channel_dim: 3
            labels_channel_dim: 1
        }}
    }}
    preprocessor_step {{ random_horizontal_flip {{}} }}
    batch_queue_capacity: 150
    num_batch_queue_threads: 35
    prefetch_queue_capacity: 10"""


# ICNet, ResNet50, full width: trunk from ImageNet ("classification").
ICNET_RESNET50 = f"""
# ICNet with Resnet-50 (v1), Atrous version, from ImageNet weights.
model {{
    icnet {{
        num_classes: 19
        filter_scale: 1.0
        feature_extractor {{ type: 'dilated_resnet50' }}
        {_hyperparams()}
        loss {{
            classification_loss {{ softmax {{}} }}
            use_auxiliary_loss: true
        }}
        main_branch_loss_weight: 1.0
        second_branch_loss_weight: 0.4
        first_branch_loss_weight: 0.16
    }}
}}
train_config: {{
    batch_size: 16
    num_steps: 200000
    fine_tune_checkpoint_type: "classification"
    fine_tune_checkpoint: "pretrained/resnet_v1_50.ckpt"
    optimizer {{
        momentum_optimizer: {{
            learning_rate: {{
                polynomial_decay_learning_rate {{
                    initial_learning_rate: 0.01
                    decay_steps: 200000
                    power: 0.9
                }}
            }}
            momentum_optimizer_value: 0.9
        }}
    }}
    {_steps(1025, 1025)}
    frobnicate: 3
}}
{_readers()}"""

# ICNet, ResNet50, pruned to half width: retrained from the pruned checkpoint.
ICNET_RESNET50_PRUNED = f"""
model {{
    icnet {{
        num_classes: 19
        filter_scale: 0.5
        feature_extractor {{ type: 'dilated_resnet50' }}
        {_hyperparams()}
        loss {{ classification_loss {{ softmax {{}} }} use_auxiliary_loss: true }}
        main_branch_loss_weight: 1.0
        second_branch_loss_weight: 0.4
        first_branch_loss_weight: 0.4
    }}
}}
train_config: {{
    batch_size: 18
    num_steps: 10000
    fine_tune_checkpoint_type: "segmentation-finetune"
    fine_tune_checkpoint: "/tmp/XXX/YYY/prunned_model.ckpt" # PRUNNED MODEL PATH
    freeze_fine_tune_backbone: true
    optimizer {{
        momentum_optimizer: {{
            learning_rate: {{ constant_learning_rate {{ learning_rate: 0.001 }} }}
            momentum_optimizer_value: 0.9
        }}
    }}
    {_steps(1025, 1025)}
}}
{_readers()}"""

PSPNET50 = f"""
model {{
    pspnet {{
        num_classes: 19
        filter_scale: 1.0
        pooling_factors: [1.0, 2.0, 3.0, 6.0]
        feature_extractor {{ type: 'dilated_resnet50' }}
        {_hyperparams()}
        loss {{ classification_loss {{ softmax {{}} }} use_auxiliary_loss: true }}
    }}
}}
train_config: {{
    batch_size: 8
    num_steps: 120000
    fine_tune_checkpoint_type: "classification"
    fine_tune_checkpoint: "/tmp/XXX/resnet50/resnet_v1_50.ckpt"
    optimizer {{
        momentum_optimizer: {{
            learning_rate: {{
                polynomial_decay_learning_rate {{
                    initial_learning_rate: 0.01 decay_steps: 120000 power: 0.9
                }}
            }}
            momentum_optimizer_value: 0.9
        }}
    }}
    {_steps(713, 713)}
}}
{_readers()}"""

# ICNet, MobileNetV2 ("dilated_mobilenet"); Adam, exponential decay and no
# auxiliary losses here, so that those mappings are covered too.
ICNET_MOBILENET = f"""
model {{
    icnet {{
        num_classes: 19
        filter_scale: 1.0
        pooling_factors: [1.0, 2.0, 3.0, 4.0]
        feature_extractor {{ type: 'dilated_mobilenet' }}
        {_hyperparams()}
        loss {{ classification_loss {{ softmax {{}} }} use_auxiliary_loss: false }}
    }}
}}
train_config: {{
    batch_size: 18
    num_steps: 120000
    optimizer {{
        adam_optimizer: {{
            learning_rate: {{
                exponential_decay_learning_rate {{
                    initial_learning_rate: 0.0005
                    decay_steps: 30000
                    decay_factor: 0.5
                }}
            }}
        }}
    }}
    {_steps(769, 769)}
}}
{_readers()}"""

FAMILIES = {"icnet_resnet50": ICNET_RESNET50,
            "icnet_resnet50_pruned": ICNET_RESNET50_PRUNED,
            "pspnet50": PSPNET50,
            "icnet_mobilenet": ICNET_MOBILENET}


@pytest.fixture(scope="module", name="converted")
def converted_fixture(tmp_path_factory):
  """family -> (config read back with fast_seg's loader, report, output text)."""
  root = tmp_path_factory.mktemp("migrate")
  results = {}
  for name, text in FAMILIES.items():
    source, output = root / f"{name}_tf1.config", root / "out" / f"{name}.config"
    source.write_text(text)
    report = migrate_config.run(str(source), str(output), log=lambda line: None)
    config = config_util.load_pipeline_config(str(output))
    results[name] = (config, report, output.read_text())
  return results


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_each_family_converts_loads_and_builds(converted, family):
  config, _, _ = converted[family]
  model = model_builder.build(config.model)
  logits = model.predict(model.preprocess(tf.zeros((1, 64, 64, 3))))[LOGITS]
  assert logits.shape[-1] == 19


def test_icnet_resnet50_values(converted):
  config, report, _ = converted["icnet_resnet50"]
  icnet = config.model.icnet
  assert icnet.num_classes == 19
  assert icnet.feature_extractor.type == "resnet_v1_50"
  assert icnet.feature_extractor.filter_scale == 1.0
  # An ImageNet "classification" checkpoint is a trunk's weights file.
  assert icnet.feature_extractor.weights_path == "pretrained/resnet_v1_50.ckpt"
  assert not config.train_config.fine_tune_checkpoint
  assert icnet.hyperparams.regularizer.l2_regularizer.weight == pytest.approx(0.00005)
  assert icnet.hyperparams.batch_norm.decay == pytest.approx(0.9997)
  assert icnet.loss.HasField("softmax_cross_entropy")
  assert icnet.loss.main_weight == 1.0
  # fast_seg's order is [1/8 head (TF1's second), 1/16 head (TF1's first)].
  assert list(icnet.loss.aux_weights) == pytest.approx([0.4, 0.16])
  train = config.train_config
  assert (train.batch_size, train.num_steps) == (16, 200000)
  momentum = train.optimizer.momentum_optimizer
  assert momentum.momentum == pytest.approx(0.9)
  poly = momentum.learning_rate.polynomial_decay_learning_rate
  assert poly.initial_learning_rate == pytest.approx(0.01)
  assert (poly.decay_steps, poly.end_learning_rate) == (200000, 0.0)
  assert poly.power == pytest.approx(0.9)
  steps = [s.WhichOneof("preprocessing_step") for s in train.data_augmentation_options]
  assert steps == ["random_scale", "random_crop", "random_horizontal_flip"]
  crop = train.data_augmentation_options[1].random_crop
  assert (crop.crop_height, crop.crop_width) == (1025, 1025)
  assert list(config.train_input_reader.tf_record_input_path) == [
      "/tmp/cityscapes_train.record"]
  assert list(config.eval_input_reader.tf_record_input_path) == [
      "/tmp/cityscapes_val.record"]
  assert not config.eval_input_reader.shuffle
  assert (config.eval_config.padded_height, config.eval_config.padded_width) == (1025, 2049)
  assert config.eval_config.num_examples == 500
  assert any("tf_record_input_path" in line and "check this path" in line
             for line in report)


def test_pruned_icnet_fine_tunes_from_a_segmentation_checkpoint(converted):
  config, report, _ = converted["icnet_resnet50_pruned"]
  assert config.model.icnet.feature_extractor.filter_scale == 0.5
  assert not config.model.icnet.feature_extractor.weights_path
  train = config.train_config
  assert train.fine_tune_checkpoint == "/tmp/XXX/YYY/prunned_model.ckpt"
  assert train.fine_tune_checkpoint_type == train_pb2.TrainConfig.SEGMENTATION
  assert train.freeze_backbone
  assert (train.batch_size, train.num_steps) == (18, 10000)
  constant = train.optimizer.momentum_optimizer.learning_rate.constant_learning_rate
  assert constant.learning_rate == pytest.approx(0.001)
  # fast_seg cannot read the TF1 checkpoint itself: the report says so.
  assert any(line.startswith("  train_config.fine_tune_checkpoint:")
             and "model.ckpt-N" in line for line in report)


def test_pspnet_values(converted):
  config, _, _ = converted["pspnet50"]
  pspnet = config.model.pspnet
  assert list(pspnet.pyramid_bins) == [1, 2, 3, 6]
  assert list(pspnet.loss.aux_weights) == pytest.approx([0.4])
  assert pspnet.feature_extractor.weights_path == "/tmp/XXX/resnet50/resnet_v1_50.ckpt"
  train = config.train_config
  assert train.batch_size == 8
  crop = train.data_augmentation_options[1].random_crop
  assert (crop.crop_height, crop.crop_width) == (713, 713)
  poly = train.optimizer.momentum_optimizer.learning_rate.polynomial_decay_learning_rate
  assert (poly.decay_steps, poly.initial_learning_rate) == (120000, pytest.approx(0.01))


def test_icnet_mobilenet_values(converted):
  config, report, _ = converted["icnet_mobilenet"]
  icnet = config.model.icnet
  assert icnet.feature_extractor.type == "mobilenet_v2"
  assert list(icnet.pyramid_bins) == [1, 2, 3, 4]
  # No auxiliary losses in TF1: a weight of 0 removes each fast_seg head.
  assert list(icnet.loss.aux_weights) == [0.0, 0.0]
  assert any("use_auxiliary_loss" in line and "aux_weights" in line for line in report)
  adam = config.train_config.optimizer.adam_optimizer
  assert adam.epsilon == pytest.approx(1e-8)
  decay = adam.learning_rate.exponential_decay_learning_rate
  assert decay.initial_learning_rate == pytest.approx(0.0005)
  assert (decay.decay_steps, decay.decay_factor, decay.staircase) == (30000, 0.5, True)
  # No fine_tune_checkpoint: no weights are invented.
  assert not icnet.feature_extractor.weights_path
  assert not config.train_config.fine_tune_checkpoint


def _header(text):
  return [line for line in text.splitlines() if line.startswith("#")]


def test_unknown_and_unneeded_fields_are_named_in_the_report_and_header(converted):
  _, report, text = converted["icnet_resnet50"]
  header = "\n".join(_header(text))
  for name, why in [("train_config.frobnicate", "unknown field"),
                    ("train_config.batch_queue_capacity", "not needed (tf.data)"),
                    ("train_input_reader.num_readers", "not needed (tf.data)")]:
    lines = [line for line in report if line.startswith(f"  {name}:")]
    assert len(lines) == 1 and why in lines[0], (name, report)
    assert lines[0].strip() in header


def test_the_report_goes_to_stdout(tmp_path, capsys):
  source, output = tmp_path / "old.config", tmp_path / "new.config"
  source.write_text(ICNET_MOBILENET.replace("batch_size: 18", "batch_size: 18 frobnicate: 3"))
  migrate_config.run(str(source), str(output))
  out = capsys.readouterr().out
  assert "train_config.frobnicate: 3 (line" in out
  assert f"wrote {output}" in out
  assert "train_config.frobnicate" in "\n".join(_header(output.read_text()))


def test_tf1_text_format_variants_parse():
  tree = migrate_config.parse_tf1(
      "a < b: 'x' \"y\"; c: [1, 2.5,] > # comment\nd: { e: -1e-5 f: FAN_IN }",
      "t.config")
  (a,), (d,) = tree.all("a"), tree.all("d")
  assert a.value.all("b")[0].value == migrate_config.Scalar("xy", True)
  assert [f.value.text for f in a.value.all("c")] == ["1", "2.5"]
  assert [f.value.text for f in d.value.fields] == ["-1e-5", "FAN_IN"]
  assert d.line == 2


@pytest.mark.parametrize("text, fragments", [
    ("compression_strategy { filter_pruner { node_scope: 'x' } }",
     ["not a fast-semantic-segmentation (TF1) pipeline config"]),
    ("model { icnet { num_classes: 19 ", ["line 1", "'}' is missing"]),
    ("model { icnet { num_classes: MODIFY_THIS_FIELD_WITH_YOUR_VALUE } }",
     ["line 1", "model.icnet.num_classes: expected a number"]),
    ("model { icnet { feature_extractor { type: 'resnet_v9' } } }",
     ["model.icnet.feature_extractor.type", "dilated_resnet50"]),
    ((helpers.REPO_ROOT / "configs/pspnet50_1.0_cityscapes_713.config").read_text(),
     ["already a fast_seg config"]),
])
def test_a_file_that_is_no_tf1_config_is_refused_by_name(tmp_path, text, fragments):
  source = tmp_path / "old.config"
  source.write_text(text)
  with pytest.raises(ValueError) as raised:
    migrate_config.run(str(source), str(tmp_path / "new.config"))
  message = str(raised.value)
  assert message.startswith(f"{source}: "), message
  for fragment in fragments:
    assert fragment in message, message
  assert not (tmp_path / "new.config").exists()


def test_bad_output_paths_are_refused(tmp_path):
  source = tmp_path / "old.config"
  source.write_text(ICNET_MOBILENET)
  (tmp_path / "a_file").write_text("x")
  for output, fragment in [(tmp_path, "is a folder"),
                           (tmp_path / "a_file" / "new.config", "is a file"),
                           (source, "is the input file")]:
    with pytest.raises(ValueError, match=fragment):
      migrate_config.run(str(source), str(output))


def test_cli_garbage_bytes_end_in_one_error_line_naming_the_file(tmp_path):
  source = tmp_path / "garbage.config"
  source.write_bytes(bytes(range(128, 256)) * 4)
  env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run(
      [sys.executable, "-m", "fast_seg.tools.migrate_config", "--input", str(source),
       "--output", str(tmp_path / "new.config")],
      cwd=helpers.REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
      check=False)
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-3000:]
  assert errors[0].startswith(f"error: {source}: not a text config"), errors[0]
