"""Progress for long loops: a live bar on a terminal, plain lines elsewhere.

Keras' Progbar redraws with carriage returns, which a log file or CI output
keeps as one long line of overwritten bars. When stdout is not a terminal
the same calls print at most one line per quarter of the work instead.
"""

import sys
import time

import tf_keras as keras


def bar(target, unit_name="step", verbose=True):
  """An object with update(current): Progbar on a TTY, else quarter lines.

  Args:
    target: the total, or None when unknown (then no quarter lines).
    unit_name: what is counted, for the lines.
    verbose: False shows nothing.
  """
  if verbose and sys.stdout.isatty():
    return keras.utils.Progbar(target, unit_name=unit_name)
  return _Lines(target if verbose else None, unit_name)


class _Lines:
  """Prints `done/target unit(s) (percent), elapsed, ETA` when the count
  crosses 25, 50, 75 and 100% (the ETA assumes the rest goes at the rate so
  far).

  One line per update, with the percent of the count it shows: with few
  units one update can cross several quarters (1 of 2 crosses 25% and 50%),
  and a line per quarter crossed would print "1/2 (25%)".
  """

  def __init__(self, target, unit_name):
    self.target = target
    self.unit_name = unit_name
    self.start = time.time()
    self.next_quarter = 1

  def update(self, current):
    if not self.target:
      return
    first = self.next_quarter
    while (self.next_quarter <= 4
           and current >= self.target * self.next_quarter / 4):
      self.next_quarter += 1
    if self.next_quarter == first:
      return
    elapsed = time.time() - self.start
    left = elapsed * max(self.target - current, 0) / max(current, 1)
    percent = 100 * min(current, self.target) // self.target
    print(f"  {current}/{self.target} {self.unit_name}s ({percent}%), "
          f"{elapsed:.1f} s, ETA {left:.0f} s", flush=True)
