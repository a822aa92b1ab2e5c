"""Guards of a running loop: preemption notices and non-finite losses."""
import logging
import signal
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np


class Preempted(Exception):
  """SIGTERM arrived; the current step was checkpointed and training stopped."""


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; no checkpoint of it was saved."""


class PreemptionNotice:
  """Within the `with` block, SIGTERM (a preemption notice) is noted rather than
  fatal, so the loop can save its state before it exits; `should_stop(i)` at
  the boundary of mapped call i says whether to. With several processes, JAX's
  preemption sync service (started by jax.distributed, it catches SIGTERM
  itself) makes every process answer True at the same call, whichever of them
  got the signal, so all save the same step."""

  def __enter__(self):
    self._received = False
    self._previous = None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint after this call, then stopping.')
    self._received = True

  def should_stop(self, call_index: int) -> bool:
    if jax.process_count() > 1:
      return multihost_utils.reached_preemption_sync_point(call_index)
    return self._received

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def check_finite(losses: np.ndarray, last_step: int, steps_per_epoch: int, manager) -> None:
  """Raises NonFiniteLossError, naming the first bad step, if any of the step
  losses `losses` (of the steps ending at `last_step`) is not finite."""
  bad = np.flatnonzero(~np.isfinite(losses))
  if not len(bad):
    return
  step = last_step - len(losses) + 1 + int(bad[0])
  manager.wait_until_finished()
  kept = manager.latest_step()
  raise NonFiniteLossError(
      f'The loss became {losses[bad[0]]} at step {step} (epoch '
      f'{(step - 1) // steps_per_epoch + 1}); training stopped without saving it. '
      + (f'The last good checkpoint (step {kept}) is kept. ' if kept is not None else '')
      + 'Lower --config.learning_rate (or raise warmup_epochs, or use float32) in a new '
      '--workdir; rerunning this command would resume from that checkpoint with the '
      'same settings.')
