"""frames_to_video: a folder of frames becomes an mp4 or GIF at their size."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from fast_seg.tools import frames_to_video
from tests import helpers

CAMVID = helpers.SHARED_DATA / "camvid" / "images"
iio = pytest.importorskip("imageio.v2")


def _frames(folder, sizes, names=None):
  """Writes one grey frame per size (level 20 * i), named frame_<i>.png."""
  folder.mkdir(exist_ok=True)
  for i, (width, height) in enumerate(sizes):
    name = names[i] if names else f"frame_{i}.png"
    Image.fromarray(np.full((height, width, 3), 20 * i, np.uint8)).save(
        folder / name)
  return folder


def _read(path):
  with iio.get_reader(str(path), "ffmpeg") as reader:
    return [np.asarray(f) for f in reader], tuple(reader.get_meta_data()["size"])


@pytest.mark.skipif(not CAMVID.is_dir(),
                    reason=f"real CamVid samples not found at {CAMVID}")
def test_camvid_frames_keep_480x360(tmp_path):
  paths = sorted(CAMVID.glob("0001TP_0069*.jpg"))[:4]
  folder = tmp_path / "frames"
  folder.mkdir()
  for path in paths:
    os.symlink(path, folder / path.name)
  result = frames_to_video.write_video(str(folder), str(tmp_path / "v.mp4"),
                                       fps=5)
  assert result["summary"] == (
      f"wrote {tmp_path / 'v.mp4'}: 4 frames of 480x360 at 5 fps (0.8 s)")
  frames, size = _read(tmp_path / "v.mp4")
  assert size == (480, 360) == result["size"] == result["stored_size"]
  assert len(frames) == 4
  # The pictures themselves, within x264's crf 17 loss, not scaled.
  for frame, path in zip(frames, paths):
    original = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(frame.astype(int) - original).mean() < 4.0


def test_odd_sizes_say_how_they_are_stored(tmp_path):
  folder = _frames(tmp_path / "odd", [(481, 361)] * 2)
  result = frames_to_video.write_video(str(folder), str(tmp_path / "o.mp4"))
  assert result["stored_size"] == (482, 362)
  assert result["summary"].endswith(
      "; stored as 482x362: H.264 in yuv420p needs even sides, the last "
      "column / row is repeated")
  assert _read(tmp_path / "o.mp4")[1] == (482, 362)


def test_frames_of_several_sizes_are_padded_not_scaled(tmp_path):
  # predict.py's overlay PNGs: one frame's legend wraps to a second row.
  folder = _frames(tmp_path / "legends", [(64, 48), (64, 58), (64, 48)])
  result = frames_to_video.write_video(str(folder), str(tmp_path / "p.gif"),
                                       fps=2)
  assert result["size"] == (64, 58)
  assert "the frames had 2 sizes (64x48, 64x58), each padded at the bottom " \
         "and right with white, not scaled" in result["summary"]
  gif = iio.mimread(str(tmp_path / "p.gif"))
  first = np.asarray(gif[0])[..., :3]
  assert first.shape == (58, 64, 3)
  assert (first[:48] == 0).all() and (first[48:] == 255).all()


def test_natural_order_and_a_full_size_gif(tmp_path):
  # frame_10 comes after frame_9; a GIF here is not the 480-wide preview.
  names = [f"frame_{i}.png" for i in range(12)]
  folder = _frames(tmp_path / "many", [(600, 20)] * 12, names)
  frames_to_video.write_video(str(folder / "frame_*.png"),
                              str(tmp_path / "g.gif"), fps=4)
  gif = Image.open(tmp_path / "g.gif")
  assert gif.size == (600, 20) and gif.n_frames == 12
  assert gif.info["duration"] == 250
  levels = []
  for i in range(gif.n_frames):
    gif.seek(i)
    levels.append(int(np.asarray(gif.convert("RGB"))[0, 0, 0]))
  assert levels == [20 * i for i in range(12)]


def test_errors_name_the_problem_and_leave_no_video(tmp_path):
  with pytest.raises(ValueError, match="no images in this folder or glob"):
    frames_to_video.write_video(str(tmp_path / "*.png"), str(tmp_path / "a.mp4"))
  folder = _frames(tmp_path / "f", [(32, 32)] * 2)
  with pytest.raises(ValueError, match=r"must end in \.mp4 or \.gif"):
    frames_to_video.write_video(str(folder), str(tmp_path / "a.avi"))
  with pytest.raises(ValueError, match="--fps must be > 0"):
    frames_to_video.write_video(str(folder), str(tmp_path / "a.mp4"), fps=0)
  (folder / "frame_1.png").write_bytes(b"\x89PNG broken")
  with pytest.raises(ValueError, match="frame_1.png: not a readable image"):
    frames_to_video.write_video(str(folder), str(tmp_path / "a.mp4"))
  assert not (tmp_path / "a.mp4").exists()


def test_cli(tmp_path):
  folder = _frames(tmp_path / "c", [(48, 36)] * 3)
  result = subprocess.run(
      [sys.executable, "-m", "fast_seg.tools.frames_to_video", "--frames",
       str(folder), "--output", str(tmp_path / "c.mp4"), "--fps", "3"],
      cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT)), check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == (
      f"wrote {tmp_path / 'c.mp4'}: 3 frames of 48x36 at 3 fps (1.0 s)")
  assert _read(tmp_path / "c.mp4")[1] == (48, 36)
