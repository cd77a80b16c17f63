"""Exports a trained checkpoint as a SavedModel and a frozen inference graph.

  python export.py --config_path configs/X.config --trained_checkpoint runs/X/ckpt-300 \
      --output_dir exported/X --input_shape 1,1024,2048,3 [--pad_to_shape 1025,2049]

The graph takes uint8 `inputs` [N,H,W,3] and returns int32 `predictions` [N,H,W].
"""

from absl import flags

from fast_seg.export import export_lib
from fast_seg.utils import cli

cli.define_config_flags()
flags.DEFINE_string("trained_checkpoint", None,
                    "Checkpoint prefix (runs/X/ckpt-300) or a train dir (its latest).")
flags.DEFINE_string("output_dir", None, "Destination folder.")
flags.DEFINE_string("input_shape", None, "N,H,W,3 of the exported input.")
flags.DEFINE_string("pad_to_shape", None,
                    "H,W the input is padded to before the network (optional).")
flags.mark_flags_as_required(
    ["trained_checkpoint", "output_dir", "input_shape"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = cli.load_config(FLAGS.config_path)
  input_shape = export_lib.parse_shape(FLAGS.input_shape, 4, "--input_shape")
  pad_to_shape = (export_lib.parse_shape(FLAGS.pad_to_shape, 2, "--pad_to_shape")
                  if FLAGS.pad_to_shape else None)
  info = export_lib.export(config, FLAGS.trained_checkpoint, FLAGS.output_dir,
                           input_shape, pad_to_shape)
  print(f"Exported {info['checkpoint']} to {FLAGS.output_dir}")
  print(f"  params: {info['params']:,}")
  print(f"  FLOPs:  {info['flops'] / 1e9:.2f} G per run of shape "
        f"{info['input_shape']} (multiply-add = 2 FLOPs)")
  print(f"  {info['saved_model']}\n  {info['frozen_graph']}")


if __name__ == "__main__":
  cli.run(main)
