"""Guards of a running loop: preemption notices, Ctrl-C and non-finite losses."""
import logging
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils
import numpy as np

from kdjax import errors


class Preempted(Exception):
  """SIGTERM or Ctrl-C arrived; the state after the current call was saved."""

  def __init__(self, message: str, exit_status: int):
    super().__init__(message)
    self.exit_status = exit_status  # the shell's for the signal: 143 or 130


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """The loss became NaN or infinite; no checkpoint of it was saved."""


class PreemptionNotice:
  """Within the `with` block, SIGTERM (a preemption notice) and Ctrl-C (SIGINT)
  are noted rather than fatal, so the loop saves its state after the current
  mapped call and stops; `should_stop(i)` at the end of call i says whether to.
  A second Ctrl-C exits at once (orbax writes checkpoints to a temporary
  directory first, so the last complete one stays). With several processes,
  JAX's preemption sync service (started by jax.distributed, it catches SIGTERM
  itself; Ctrl-C is handed to it as SIGTERM) makes every process answer True at
  the same call, whichever got the signal, so all save the same step."""

  def __enter__(self):
    self.reason = ''  # 'SIGTERM' or 'Ctrl-C' once one arrived here
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._on_sigint)
      if jax.process_count() == 1:
        self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._on_sigterm)
    return self

  def _on_sigterm(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint after this call, then stopping.')
    self.reason = self.reason or 'SIGTERM'

  def _on_sigint(self, signum, frame):
    del signum, frame
    if self.reason == 'Ctrl-C':
      logging.warning('Second Ctrl-C: stopping now; the last complete checkpoint is kept.')
      os._exit(130)  # pylint: disable=protected-access  (no cleanup may run: stop now)
    logging.warning('Ctrl-C: saving a checkpoint after this call, then stopping (Ctrl-C '
                    'again stops at once).')
    self.reason = 'Ctrl-C'
    if jax.process_count() > 1:
      os.kill(os.getpid(), signal.SIGTERM)  # to the preemption sync service

  @property
  def exit_status(self) -> int:
    return 128 + (signal.SIGINT if self.reason == 'Ctrl-C' else signal.SIGTERM)

  def should_stop(self, call_index: int) -> bool:
    if jax.process_count() > 1:
      stop = multihost_utils.reached_preemption_sync_point(call_index)
      self.reason = self.reason or ('SIGTERM' if stop else '')
      return stop
    return bool(self.reason)

  def __exit__(self, *exc):
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)


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
