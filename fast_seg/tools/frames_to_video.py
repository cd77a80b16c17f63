r"""Makes an mp4 or a GIF of a folder of frames, at the frames' own size.

  python -m fast_seg.tools.frames_to_video \
      --frames 'predictions/drive_*_overlay.png' --output drive.mp4 [--fps 10]

--frames is a folder or a (quoted) glob of images, taken in natural order
(frame_9 before frame_10). The mp4 is written as predict.py writes its own
(utils/video_io.py): H.264, yuv420p so every player plays it, x264 crf 17,
no audio, and the frames' exact size. That is what a plain
imageio.mimwrite does not do: its macro_block_size=16 scales 480x360
frames to 480x368. An odd width or height gets its last column or row
repeated once (yuv420p needs even sides). Frames are never scaled: when
their sizes differ (predict.py's overlay PNGs have a legend below, one row
or more as the classes shown need), each is padded at the bottom and right
with white to the largest. The summary line says both. A .gif holds every
frame, looping; Pillow writes it in one piece at the end, so keep those to
a few hundred frames.

Needs the [video] extra (imageio, imageio-ffmpeg): pip install
'fast_seg[video]'.
"""

import os

from absl import flags
import numpy as np

from fast_seg.utils import cli
from fast_seg.utils import image_files
from fast_seg.utils import video_io

FORMATS = (".mp4", ".gif")
# Padding of smaller frames: the legend's white.
PAD_VALUE = 255

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string("frames", None,
                      "Folder or glob of the frames (PNG, JPEG, ...), taken "
                      "in natural order.")
  flags.DEFINE_string("output", None, "The .mp4 or .gif to write.")
  flags.DEFINE_float("fps", 10.0, "Frames a second of the video.")
  flags.mark_flags_as_required(["frames", "output"])


def _check(paths, spec, output, fps):
  """ValueErrors for what is wrong before anything is written."""
  if not paths:
    raise ValueError(f"--frames {spec}: no images in this folder or glob")
  if not output.lower().endswith(FORMATS):
    raise ValueError(f"--output {output}: must end in "
                     f"{' or '.join(FORMATS)}")
  if not fps > 0:
    raise ValueError(f"--fps must be > 0, got {fps}")


def _padded(frame, size):
  """`frame` padded at the bottom and right to size = (width, height)."""
  pad = (size[1] - frame.shape[0], size[0] - frame.shape[1])
  if not any(pad):
    return frame
  return np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)),
                constant_values=PAD_VALUE)


def _summary(output, paths, sizes, size, stored, fps):
  """The line write_video returns: what went in, what came out."""
  summary = (f"wrote {output}: {len(paths)} frames of {size[0]}x{size[1]} "
             f"at {fps:g} fps ({len(paths) / fps:.1f} s)")
  if len(sizes) > 1:
    listed = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
    summary += (f"; the frames had {len(sizes)} sizes ({listed}"
                f"{', ...' if len(sizes) > 4 else ''}), each padded at the "
                "bottom and right with white, not scaled")
  if stored != size:
    summary += (f"; stored as {stored[0]}x{stored[1]}: H.264 in yuv420p "
                "needs even sides, the last column / row is repeated")
  return summary


def write_video(spec, output, fps=10.0):
  """Writes the frames of the folder or glob `spec` to `output`.

  Args:
    spec: a folder or a glob of images.
    output: the .mp4 or .gif path (its folder is made).
    fps: frames a second.

  Returns:
    dict: frames (their number), size and stored_size ((width, height) of
    the frames and of the video's frames), seconds, summary (a line).

  Raises:
    ValueError: no frames, a frame that cannot be read (named), a bad
      --output or --fps. A partly written video is removed.
  """
  paths = image_files.list_images(spec)
  _check(paths, spec, output, fps)
  sizes = {image_files.read_size(path) for path in paths}
  size = (max(w for w, _ in sizes), max(h for _, h in sizes))
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  mp4 = output.lower().endswith(".mp4")
  writer = (video_io.Mp4Writer(output, fps) if mp4
            else video_io.GifWriter(output, fps, capped=False))
  try:
    for path in paths:
      writer.add(_padded(image_files.read_rgb(path), size))
  except BaseException:
    writer.close()
    if os.path.exists(output):
      os.remove(output)
    raise
  writer.close()
  stored = video_io.stored_size(*size) if mp4 else size
  return {"frames": len(paths), "size": size, "stored_size": stored,
          "seconds": len(paths) / fps,
          "summary": _summary(output, paths, sizes, size, stored, fps)}


def main(argv):
  del argv
  print(write_video(FLAGS.frames, FLAGS.output, FLAGS.fps)["summary"])


def command():
  """The fast-seg-frames-to-video command, and python -m
  fast_seg.tools.frames_to_video.

  The flags are defined here, not at import, so that importing the module
  (as tests do) defines no flags that could clash with other tools' (--output).
  """
  _define_flags()
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
