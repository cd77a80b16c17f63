"""Video files read frame by frame and written as an mp4 or a GIF preview.

predict.py streams a video through a model: frames are decoded one at a time
and each drawn overlay is encoded at once, so memory does not grow with the
video. Reading and the mp4 go through imageio's ffmpeg plugin, the optional
[video] extra, imported on first use: images alone never need it, and a
missing one is a one-line error naming the install command. Damaged frames
are reported, never papered over: a frame that fails to read comes as a
ValueError in its place, and the frames ffmpeg drops are counted.
"""

import itertools
import math
import os
import re
import subprocess

import numpy as np
from PIL import Image

# The file name endings read as a video (any container ffmpeg reads).
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg",
                    ".mpeg")
# A GIF covers at most this much of a clip: it is a preview to paste into a
# chat or an issue; footage belongs in the mp4 (10-50x smaller).
GIF_MAX_SECONDS = 15.0
# ...at most this many frames a second (every k-th frame) and this wide.
GIF_MAX_FPS = 10.0
GIF_MAX_WIDTH = 480
# x264 at imageio's quality 6.5 is crf 17, visually lossless: class borders
# and thin classes keep their colour, which the default crf 25 smears.
MP4_QUALITY = 6.5
# A reader still failing after this many frames in a row is given up.
_MAX_ERRORS_IN_A_ROW = 10


def _imageio():
  """imageio with its ffmpeg plugin, imported here: only videos need them.

  They are the optional [video] extra, so a missing one is a one-line error
  naming it and the install command rather than an ImportError traceback.
  """
  try:
    import imageio.v2  # mp4 (any ffmpeg format) reading and writing.
    import imageio.v3  # The pillow plugin's GIF writer.
    import imageio.plugins.ffmpeg  # Imports imageio-ffmpeg, the binary.
  except ImportError as e:
    missing = "imageio-ffmpeg" if "ffmpeg" in (e.name or "") else "imageio"
    raise ValueError(f"videos need {missing}, which is not installed: "
                     "pip install 'fast_seg[video]'") from None
  return imageio


def _last_line(text):
  """The last non-empty line of ffmpeg's (long) log: its actual complaint."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else "no message"


def _reason(error):
  """A read error's own words, without the ffmpeg log imageio appends."""
  text = " ".join(str(error).split("=== stderr ===", maxsplit=1)[0].split())
  return text or _last_line(error)


def _count_packets(path, ffmpeg_exe):
  """The frames the container holds, counted without decoding them.

  ffmpeg drops a frame it cannot decode, so this count minus the frames
  delivered is how many were lost; it is also the progress bar's total. A
  stream copy reads the file once and decodes nothing, so it costs little
  next to the model, and it fails (one line) for a file ffmpeg cannot open.
  """
  result = subprocess.run(
      [ffmpeg_exe, "-hide_banner", "-nostdin", "-i", path, "-map", "0:v:0",
       "-c", "copy", "-f", "null", "-"],
      capture_output=True, text=True, errors="replace", check=False)
  counts = re.findall(r"frame=\s*(\d+)", result.stderr)
  if result.returncode or not counts:
    raise ValueError(f"{path}: not a readable video "
                     f"({_last_line(result.stderr)})")
  return int(counts[-1])


def decoded_frames(frames, stem):
  """(name, RGB frame) of each of `frames`; a frame that fails to read comes
  as (name, ValueError), so the caller reports and skips it like an image.

  ffmpeg's pipe usually ends at such an error (the iterator then stops);
  frames that ffmpeg itself drops as undecodable never get here and are
  counted by Video.undecodable instead.
  """
  iterator, errors = iter(frames), 0
  for index in itertools.count():
    name = f"{stem}_{index:06d}"
    try:
      frame = next(iterator)
    except StopIteration:
      return
    except (RuntimeError, OSError, ValueError) as e:
      errors += 1
      yield name, ValueError(f"{name}: not a readable frame ({_reason(e)})")
      if errors >= _MAX_ERRORS_IN_A_ROW:
        return
      continue
    errors = 0
    yield name, np.asarray(frame)


def _open_reader(imageio, path):
  """imageio's ffmpeg reader of `path` passing every frame through once.

  -fps_mode is ffmpeg 5.1's name; the ffmpeg 4 of older imageio-ffmpeg
  wheels (or one named by IMAGEIO_FFMPEG_EXE) knows only -vsync, which
  ffmpeg 8 removed.
  """
  problem = None
  for option in ("-fps_mode", "-vsync"):
    try:
      return imageio.v2.get_reader(path, "ffmpeg",
                                   output_params=[option, "passthrough"])
    except (OSError, RuntimeError) as e:
      problem = e
      if "Unrecognized option" not in str(e):
        break
  raise ValueError(f"{path}: not a readable video ({_last_line(problem)})")


class Video:
  """A video file read once, in order, with imageio's ffmpeg plugin.

  Every decoded frame comes exactly once (-fps_mode passthrough): ffmpeg's
  default constant-rate output would paper over a frame it cannot decode
  with a copy of its neighbour. So a lost frame is simply missing, and
  `undecodable` counts them against the container's packets at the end.
  """

  def __init__(self, path):
    imageio = _imageio()
    self.path = path
    self.stem = os.path.splitext(os.path.basename(path))[0]
    self.packets = _count_packets(path, imageio.plugins.ffmpeg.get_exe())
    self._reader = _open_reader(imageio, path)
    meta = self._reader.get_meta_data()
    self.fps = float(meta.get("fps") or 0.0)
    self.size = tuple(meta["size"])  # (width, height)
    self.read, self.read_to_end = 0, False

  @property
  def seconds(self):
    return self.packets / self.fps if self.fps > 0 else 0.0

  @property
  def undecodable(self):
    """Frames in the file that never came out (known once read to the end)."""
    return max(0, self.packets - self.read) if self.read_to_end else 0

  def frames(self, max_frames=0):
    """decoded_frames of the video, the first max_frames (0: all), streamed."""
    try:
      for item in itertools.islice(decoded_frames(self._reader, self.stem),
                                   max_frames or None):
        self.read += 1
        yield item
      self.read_to_end = not max_frames or self.read < max_frames
    finally:
      self._reader.close()


def _even(frame):
  """`frame` with its last row / column repeated to an even size: yuv420p,
  the pixel format every player plays, has no odd widths or heights."""
  pad = (frame.shape[0] % 2, frame.shape[1] % 2)
  if not any(pad):
    return frame
  return np.pad(frame, ((0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")


def stored_size(width, height):
  """(width, height) Mp4Writer stores a frame of this size at: the same,
  but for an odd side, one more (see _even)."""
  return width + width % 2, height + height % 2


class Mp4Writer:
  """Frames as an H.264 mp4 at a given frame rate, no audio, at their size.

  imageio's default macro_block_size=16 scales every frame up to sides
  that are multiples of 16 (480x360 becomes 480x368, stretched, with only
  a warning on the log); 1 keeps the frames as they are, but for
  yuv420p's even sides (_even).
  """

  def __init__(self, path, fps):
    self._writer = _imageio().v2.get_writer(
        path, "ffmpeg", fps=fps, codec="libx264", quality=MP4_QUALITY,
        macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-movflags", "+faststart"])  # Plays while loading.

  def add(self, frame):
    self._writer.append_data(_even(frame))

  def close(self):
    self._writer.close()


class GifWriter:
  """A preview: every k-th frame (<= GIF_MAX_FPS), at most GIF_MAX_WIDTH
  wide, of the first GIF_MAX_SECONDS, looping.

  Pillow writes a GIF in one piece when it is closed, so the chosen frames
  wait until then as 8-bit palette images; the caps bound them (150 frames
  of 480 x 270 are 20 MB) however long the video is. capped=False writes
  every frame at its own size (frames_to_video's GIF: a few frames).
  """

  def __init__(self, path, fps, capped=True):
    self._step = max(1, math.ceil(fps / GIF_MAX_FPS - 1e-6)) if capped else 1
    self._limit = max(1, round(GIF_MAX_SECONDS * fps)) if capped else None
    self._max_width = GIF_MAX_WIDTH if capped else None
    self._duration_ms = 1000.0 * self._step / fps
    self._file = _imageio().v3.imopen(path, "w", plugin="pillow")
    self._index = 0

  def add(self, frame):
    if ((self._limit is None or self._index < self._limit)
        and self._index % self._step == 0):
      height, width = frame.shape[:2]
      if self._max_width and width > self._max_width:
        size = (self._max_width,
                max(1, round(height * self._max_width / width)))
        frame = np.asarray(Image.fromarray(frame).resize(size, Image.BOX))
      self._file.write(frame, is_batch=False, duration=self._duration_ms,
                       loop=0, bits=8)
    self._index += 1

  def close(self):
    self._file.close()
