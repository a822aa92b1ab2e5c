"""Guards of a running loop: preemption notices and non-finite losses."""
import logging
import signal
import threading

import jax
import numpy as np


class Preempted(Exception):
  """SIGTERM arrived; the current step was checkpointed and training stopped."""


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; no checkpoint of it was saved."""


class PreemptionNotice:
  """Within the `with` block, SIGTERM (a preemption notice) only sets `received`,
  so the loop can save the current step before it exits."""

  def __enter__(self):
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint after this step, then stopping.')
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def check_finite(step_metrics, last_step: int, steps_per_epoch: int, manager) -> None:
  """Raises NonFiniteLossError, naming the first bad step, if any loss of the
  steps ending at `last_step` is not finite (one host sync per checkpoint)."""
  step_losses = np.asarray(jax.device_get([m['loss'][0] for m in step_metrics]))
  bad = np.flatnonzero(~np.isfinite(step_losses))
  if not len(bad):
    return
  step = last_step - len(step_losses) + 1 + int(bad[0])
  manager.wait_until_finished()
  kept = manager.latest_step()
  raise NonFiniteLossError(
      f'The loss became {step_losses[bad[0]]} at step {step} (epoch '
      f'{(step - 1) // steps_per_epoch + 1}); training stopped without saving it. '
      + (f'The last good checkpoint (step {kept}) is kept. ' if kept is not None else '')
      + 'Lower --config.learning_rate (or raise warmup_epochs, or use float32) in a new '
      '--workdir; rerunning this command would resume from that checkpoint with the '
      'same settings.')
