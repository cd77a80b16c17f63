"""Whether a batch of some size can fit in this machine's memory at all.

A size no machine can hold (a random_crop of 100000x100000) is otherwise
accepted, and training allocates until the kernel kills the process (exit
137, no message). The check is a floor, not a forecast: it refuses a size
only when even a lower bound of what the run must hold exceeds the
machine's physical memory, so a real config is never refused by it (a
Cityscapes batch of 8 x 1024x2048 needs at least 0.4 GiB by this bound;
training it takes tens of GiB, which is the user's to provision).
"""

import os

# Bytes per pixel of a batch that any fast_seg model holds at once, before
# its first layer runs: the float32 RGB batch the input pipeline yields
# (12) and the model's preprocessed float32 copy of it (12). Training holds
# the activations of every layer on top, hundreds of bytes per pixel.
MIN_BYTES_PER_PIXEL = 24
GIB = 1024 ** 3


def physical_memory():
  """This machine's physical memory in bytes, or None if unknown."""
  try:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (AttributeError, OSError, ValueError):
    return None


def min_batch_bytes(batch_size, height, width):
  """The least memory a batch of `batch_size` x `height` x `width` needs."""
  return batch_size * height * width * MIN_BYTES_PER_PIXEL


def check_batch_fits(batch_size, size, what, available=None):
  """Raises a ValueError when a batch cannot fit in physical memory.

  Args:
    batch_size: images per batch.
    size: (height, width) of each image.
    what: the fields or flags that set the batch, for the message, e.g.
      'train_config.batch_size 4 x ...random_crop 100000x100000'.
    available: bytes of memory; this machine's when None.
  """
  available = physical_memory() if available is None else available
  needed = min_batch_bytes(batch_size, *size)
  if available and needed > available:
    raise ValueError(
        f"{what} cannot fit in memory: a batch of {batch_size} x "
        f"{size[0]}x{size[1]} pixels needs at least {needed / GIB:,.0f} GiB "
        f"({MIN_BYTES_PER_PIXEL} bytes per pixel before any layer runs), and "
        f"this machine has {available / GIB:,.1f} GiB; use a smaller size")
