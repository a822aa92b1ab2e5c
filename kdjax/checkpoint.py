"""Orbax checkpoints in the workdir: the last few steps plus the best by test top-1."""
import os

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers


def _top1(metrics):
  return metrics['top1']


def create_manager(workdir: str, keep_last: int) -> ocp.CheckpointManager:
  """A manager under workdir/checkpoints keeping the last `keep_last` and the best."""
  policy = checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(n=keep_last),
      checkpoint_managers.BestN(get_metric_fn=_top1, n=1),
  ])
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
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
