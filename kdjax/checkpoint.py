"""Orbax checkpoints in the workdir: the last few steps plus the best by test top-1.

Orbax writes each checkpoint to a temporary directory and renames it when it is
complete, so a process killed mid-save leaves nothing that passes for a
checkpoint.
"""
import logging
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from kdjax import workdir as workdir_lib


def _top1(metrics):
  return metrics['top1']


def _directory(workdir):
  return workdir_lib.path(workdir) / 'checkpoints'


def create_manager(workdir: str, keep_last: int) -> ocp.CheckpointManager:
  """A manager under workdir/checkpoints keeping the last `keep_last` and the best."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep_last),
      checkpoint_managers.BestN(get_metric_fn=_top1, n=1,
                                keep_checkpoints_without_metrics=False),
  ])
  return ocp.CheckpointManager(
      _directory(workdir),
      options=ocp.CheckpointManagerOptions(
          preservation_policy=policy, best_fn=_top1, best_mode='max', create=True))


CORRUPT = 'corrupt_checkpoints'  # where unreadable checkpoints are moved, under the workdir


def _open_and_restore(workdir, keep_last, state):
  manager = create_manager(workdir, keep_last)
  step = manager.latest_step()
  if step is not None:
    state = manager.restore(step, args=ocp.args.StandardRestore(state))
  return manager, state


def resume(workdir: str, keep_last: int, state) -> Tuple[ocp.CheckpointManager, Any]:
  """(manager, the latest checkpoint restored into `state`'s structure, or
  `state` itself if there is none).

  If the latest checkpoint cannot be read, it is moved to
  workdir/corrupt_checkpoints (so that training can save that step again) and
  the one before it is restored, saying so. If that fails too, or there is no
  other, everything is put back and the error says what to do.
  """
  try:
    return _open_and_restore(workdir, keep_last, state)
  except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
    problem = f'{type(e).__name__}: {e}'
    steps = sorted(int(d.name) for d in _directory(workdir).iterdir() if d.name.isdigit())
    if len(steps) < 2:
      raise ValueError(
          f'The only checkpoint in {_directory(workdir)} cannot be read ({problem}). '
          'Move it away to train from scratch, or use a new --workdir.') from e
  latest = _directory(workdir) / str(steps[-1])
  moved = workdir_lib.path(workdir) / CORRUPT / str(steps[-1])
  moved.parent.mkdir(parents=True, exist_ok=True)
  latest.rename(moved)
  try:
    manager, state = _open_and_restore(workdir, keep_last, state)
  except Exception as e:  # pylint: disable=broad-except
    moved.rename(latest)
    raise ValueError(
        f'Neither of the last two checkpoints in {_directory(workdir)} (steps '
        f'{steps[-1]} and {steps[-2]}) can be read, which points to a changed model or '
        f'code rather than a damaged file ({type(e).__name__}: {e}). Resume with the '
        'code and config that wrote them, or use a new --workdir.') from e
  logging.warning('The latest checkpoint (step %d) cannot be read (%s); resuming from '
                  'step %d instead. The unreadable one was moved to %s.', steps[-1],
                  problem, int(state.step), moved)
  return manager, state


def save(manager: ocp.CheckpointManager, step: int, replicated_state,
         top1: Optional[float] = None) -> None:
  """Saves step `step`'s state, replicated over the devices (a pmap's output), with its test
  top-1 for best tracking at epoch ends; mid-epoch saves have none and are kept
  only as latest. Orbax copies one replica to the host and writes it in the
  background; with several processes, process 0 writes."""
  metrics = None if top1 is None else {'top1': float(top1)}
  state = jax.tree.map(ocp.utils.fully_replicated_host_local_array_to_global_array,
                       replicated_state)
  manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics)


def restore_best_variables(workdir: str, abstract_variables) -> Tuple[int, Any]:
  """(step, variables) of workdir's best checkpoint by test top-1 (the latest if
  none has metrics), restoring only the collections in `abstract_variables`
  (e.g. params and batch_stats, not the optimizer state) as numpy arrays."""
  manager = ocp.CheckpointManager(
      _directory(workdir), options=ocp.CheckpointManagerOptions(
          read_only=True, save_interval_steps=0, create=False, best_fn=_top1,
          best_mode='max'))
  step = manager.best_step()
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'{_directory(workdir)} holds no complete checkpoint.')
  # As numpy, never onto the devices that wrote it: a run saved by several
  # hosts names devices this process does not have.
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                          abstract_variables)
  variables = ocp.PyTreeCheckpointer().restore(
      _directory(workdir) / str(step) / 'default',
      args=ocp.args.PyTreeRestore(abstract_variables, restore_args=as_numpy,
                                  partial_restore=True))
  return step, variables


def save_variables(directory: str, variables) -> None:
  """Saves fixed variables (a converted teacher) as step 0 under directory/checkpoints."""
  manager = ocp.CheckpointManager(_directory(directory),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(0, args=ocp.args.StandardSave(variables))
  manager.wait_until_finished()
