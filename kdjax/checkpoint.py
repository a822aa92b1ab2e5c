"""Orbax checkpoints in the workdir: the last few steps plus the best by test top-1."""
import os
from typing import Any, Tuple

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers


def _top1(metrics):
  return metrics['top1']


def _directory(workdir):
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def create_manager(workdir: str, keep_last: int) -> ocp.CheckpointManager:
  """A manager under workdir/checkpoints keeping the last `keep_last` and the best."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep_last),
      checkpoint_managers.BestN(get_metric_fn=_top1, n=1),
  ])
  return ocp.CheckpointManager(
      _directory(workdir),
      options=ocp.CheckpointManagerOptions(
          preservation_policy=policy, best_fn=_top1, best_mode='max', create=True))


def restore_latest(manager: ocp.CheckpointManager, state):
  """The latest complete checkpoint restored into `state`'s structure, or `state`."""
  step = manager.latest_step()
  if step is None:
    return state
  return manager.restore(step, args=ocp.args.StandardRestore(state))


def save(manager: ocp.CheckpointManager, state, top1: float) -> None:
  """Saves host-side `state` (asynchronously) with its test top-1 for best tracking."""
  manager.save(int(state.step), args=ocp.args.StandardSave(state),
               metrics={'top1': float(top1)})


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
  path = os.path.join(_directory(workdir), str(step), 'default')
  variables = ocp.PyTreeCheckpointer().restore(
      path, args=ocp.args.PyTreeRestore(abstract_variables, partial_restore=True))
  return step, variables


def save_variables(directory: str, variables) -> None:
  """Saves fixed variables (a converted teacher) as step 0 under directory/checkpoints."""
  manager = ocp.CheckpointManager(_directory(directory),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(0, args=ocp.args.StandardSave(variables))
  manager.wait_until_finished()
