"""Image files the user names (predict.py's inputs, frames_to_video's frames,
the benchmark's --image_glob): one listing, one reader, one error."""

import glob
import os
import re

import numpy as np
from PIL import Image

# File name endings read as images (any case): the converters' image and
# label folders, predict.py's --input folders and globs, frames_to_video.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")

def _natural_key(path):
  """Sort key reading digit runs as numbers: frame_9 before frame_10, as a
  person numbering frames without zero padding means them."""
  return [int(part) if part.isdigit() else part
          for part in re.split(r"(\d+)", path)]


def list_images(spec):
  """The image files (IMAGE_EXTENSIONS) of a directory or a
  glob, in natural order (_natural_key); [] when there are none."""
  if os.path.isdir(spec):
    paths = [os.path.join(spec, name) for name in os.listdir(spec)]
  else:
    paths = glob.glob(spec)
  return sorted((p for p in paths if os.path.isfile(p) and p.lower().endswith(
      IMAGE_EXTENSIONS)), key=_natural_key)


def read_size(path):
  """(width, height) of the image file at `path`, from its header alone.

  Raises:
    ValueError: the file cannot be read as an image, naming it.
  """
  try:
    with Image.open(path) as image:
      return image.size
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable image ({e})") from None


def read_rgb(path):
  """The image file at `path` as RGB uint8 [H, W, 3] (grey, palette and
  RGBA files converted).

  Raises:
    ValueError: the file cannot be read as an image, naming it.
  """
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable image ({e})") from None
