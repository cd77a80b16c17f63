"""Reading image files the user names (predict.py's inputs, the benchmark's
--image_glob): one reader, one error."""

import numpy as np
from PIL import Image


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
