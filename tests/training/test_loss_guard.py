"""The loss guard's rules by value: NaN / Inf, and divergence that stays finite."""

import math

import numpy as np
import pytest

from fast_seg.training import loss_guard

# Losses logged by a real run (ICNet-MobileNetV2 0.25 on CamVid trainval,
# every 1200th step of 46800): they fall from 11 to ~2 and wander by 1.5x.
ICNET_CAMVID = [11.0597, 6.6624, 6.6719, 4.3757, 4.3533, 3.9667, 4.3957,
                3.0255, 3.1293, 3.3605, 3.0118, 2.8905, 3.1406, 2.9201,
                2.2056, 2.5768, 2.6141, 2.2320, 2.4210, 2.6947, 2.7346,
                3.0415, 2.7092, 3.1122, 2.3289, 3.1313, 2.3653, 2.8099,
                2.2778]


def _run(losses, factor=1000.0):
  guard = loss_guard.LossGuard(factor)
  for step, loss in enumerate(losses, start=1):
    guard.update(np.float32(loss), np.int64(step))
  return guard


def test_smoothed_update_by_value():
  average, minimum = loss_guard.smoothed_update(4.0, 0.0, math.inf)
  assert (float(average), float(minimum)) == (4.0, 4.0)
  average, minimum = loss_guard.smoothed_update(2.0, average, minimum)
  assert float(average) == pytest.approx(0.9 * 4.0 + 0.1 * 2.0)
  assert float(minimum) == pytest.approx(3.8)
  # A step with nothing labelled (loss 0) changes nothing.
  assert [float(v) for v in loss_guard.smoothed_update(0.0, average, minimum)
          ] == pytest.approx([3.8, 3.8])


def test_explosion_at_step_two_trips_there():
  # Adam at lr 1e6 on the tiny dataset: 3.2 at step 1, then 7e13.
  guard = _run([3.2, 7.2e13, 8.9e12, 1.8e12])
  assert int(guard.diverged_at) == 2
  assert int(guard.nonfinite_steps) == 0
  # Frozen at the trip: 0.9 * 3.2 + 0.1 * 7.2e13 over the minimum 3.2.
  assert float(guard.average) == pytest.approx(7.2e12, rel=1e-5)
  assert float(guard.minimum) == pytest.approx(3.2)
  assert guard.tripped()
  text = guard.problem(4, "/run/ckpt-1")
  assert "the loss diverged at step 2: smoothed, 7.2e+12 is over " \
         "train_config.divergence_factor (1000) times its running minimum " \
         "3.2; training stopped at step 4" in text
  assert "The last good checkpoint is kept: /run/ckpt-1" in text
  assert "divergence_factor: 0 turns this check off" in text


def test_slow_growth_trips_once_over_the_factor():
  # x10 per step from 1: the smoothed loss passes 1000 x 1 at step 5.
  guard = _run([10.0 ** i for i in range(8)])
  assert int(guard.diverged_at) == 5


def test_real_run_and_noisy_batches_do_not_trip():
  assert not _run(ICNET_CAMVID).tripped()
  # A batch with a few easy labelled pixels (1000x below the rest), batches
  # without a labelled pixel (0) at the start and later.
  assert not _run([0.0, 0.0, 3.0] + [1.0] * 20 + [1e-3, 2.0, 0.0, 2.5]).tripped()
  # A rise of 100x over the minimum stays under the default factor.
  assert not _run([1.0] * 5 + [100.0] * 50).tripped()
  assert _run([1.0] * 5 + [100.0] * 50, factor=50).tripped()


def test_factor_zero_is_off_but_nan_still_counts():
  guard = _run([3.0, 1e13, 1e20], factor=0)
  assert not guard.tripped() and guard.problem(3, None) is None
  guard = _run([3.0, float("nan"), float("inf")], factor=0)
  assert int(guard.nonfinite_steps) == 2
  assert guard.problem(3, None) == (
      "the loss became NaN or Inf by step 3; training stopped. The last good "
      "checkpoint is kept: none (no checkpoint was written). Lower the "
      "learning rate, check the labels (train_config / input) or use "
      "gradient-friendlier settings, then restart on the same logdir.")


def test_nan_is_counted_apart_from_divergence():
  guard = _run([3.0, float("nan"), 2.0])
  assert int(guard.nonfinite_steps) == 1 and int(guard.diverged_at) == 0
  # The NaN step left the smoothed loss alone.
  assert float(guard.average) == pytest.approx(0.9 * 3.0 + 0.1 * 2.0)
  assert "NaN or Inf" in guard.problem(3, None)
