r"""fast-seg-import-weights: a model trained by another project, imported
as a fast_seg checkpoint.

  python -m fast_seg.tools.import_weights --from tf1_fast_semantic_segmentation \
      --input old/train/model.ckpt-200000 \
      --config_path configs/icnet_resnet50_0.5_cityscapes_1024.config \
      --output_dir imported/icnet_0.5

(its PSPNet50 likewise, with configs/pspnet50_1.0_cityscapes_713.config).
The output folder gets `model.index` / `model.data-*` (every weight of the
model under its checkpoint key, no optimizer state), a `checkpoint` index and
the `pipeline.config` that reproduces the other project's graph: eval.py,
export.py, compress.py, predict.py and fine-tuning (fine_tune_checkpoint)
read it like any fast_seg checkpoint.

Every weight the model needs is looked up by a name map (third_party/) and
its shape checked; every variable of the file must be used, except training
state (step, optimizer slots). Anything else stops the import with one line
naming the variables, before anything is written.
"""

from absl import flags

from fast_seg.tools.import_weights import importer
from fast_seg.tools.import_weights.source import SOURCES
from fast_seg.utils import cli

FLAGS = flags.FLAGS


def _define_flags():
  cli.define_config_flags()
  flags.DEFINE_enum("from", None, SOURCES.names(), "The project that "
                    "trained the model.")
  flags.DEFINE_string("input", None, "Its checkpoint (prefix, or a "
                      "directory: its latest).")
  flags.DEFINE_string("output_dir", None, "Folder for model.* and "
                      "pipeline.config.")
  flags.mark_flags_as_required(["from", "input", "output_dir"])


def main(argv):
  del argv
  cli.check_output_dir(FLAGS.output_dir, "--output_dir")
  config = cli.load_config(FLAGS.config_path)
  source_name = FLAGS["from"].value
  result = importer.import_checkpoint(source_name, FLAGS.input, config,
                                      FLAGS.output_dir)
  description = SOURCES.get(source_name).description
  step = "" if result["step"] is None else f" of step {result['step']}"
  print(f"wrote {result['prefix']} ({result['num_weights']} weights{step} "
        f"from {result['source']}, {description})"
        f" and pipeline.config, which builds that project's graph; evaluate "
        f"it with eval.py --config_path {FLAGS.output_dir}/pipeline.config "
        f"--checkpoint {result['prefix']} --eval_dir EVAL_DIR")


def command():
  """The fast-seg-import-weights command, and python -m
  fast_seg.tools.import_weights.

  The flags are defined here, not at import, so that importing the module
  (as tests do) defines no flags that clash with other tools' (--config_path,
  --output_dir).
  """
  _define_flags()
  cli.run(main, usage=__doc__)
