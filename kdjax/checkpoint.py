"""Orbax checkpoints in the workdir: the last few steps plus the best by test top-1.

A checkpoint holds one copy of the state, without a device axis, whatever the
device and host count that wrote it, so a run saved on 4 devices resumes on 1
or 8, and any run teaches or is evaluated on any machine. Orbax writes each
checkpoint to a temporary directory and renames it when it is complete, so a
process killed mid-save leaves nothing that passes for a checkpoint.
"""
import logging
from typing import Any, Optional, Sequence, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from kdjax import errors
from kdjax import workdir as workdir_lib

CORRUPT = 'corrupt_checkpoints'  # where unreadable checkpoints are moved, under the workdir
ITEM = 'default'  # the one item of each step, as orbax names it


class CheckpointMismatchError(errors.UserError, ValueError):
  """A readable checkpoint of another model: no fallback to an older step helps."""


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
      _directory(workdir), item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(
          preservation_policy=policy, best_fn=_top1, best_mode='max', create=True))


# Drops the device axis of every leaf of one device's shards in one call: one
# compiled program per device, where indexing leaf by leaf compiled one per leaf
# shape and device (52 programs for a tiny ResNet18's first save on 4 devices).
_without_device_axis = jax.jit(lambda shards: jax.tree.map(lambda x: x[0], shards))


def _one_copy(replicated_state, mesh: jax.sharding.Mesh):
  """A pmap output (an equal copy per local device on a leading axis of every
  leaf) as one global array per leaf without that axis, replicated over
  `mesh`: the same shapes on 1 device and on 8, which orbax writes once
  (process 0) on any host count."""
  leaves, treedef = jax.tree.flatten(replicated_state)
  by_device = {}
  for leaf in leaves:
    for shard in leaf.addressable_shards:
      by_device.setdefault(shard.device, []).append(shard.data)
  copies = [_without_device_axis(shards)
            for _, shards in sorted(by_device.items(), key=lambda item: item[0].id)]
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return treedef.unflatten([
      jax.make_array_from_single_device_arrays(leaf.shape[1:], sharding,
                                               [copy[i] for copy in copies])
      for i, leaf in enumerate(leaves)])


def save(manager: ocp.CheckpointManager, step: int, replicated_state, devices: Sequence[Any],
         top1: Optional[float] = None) -> None:
  """Saves step `step`'s state, replicated over the `devices` a pmap maps over
  (every process's), as one copy, with its test top-1 for best tracking at
  epoch ends; mid-epoch saves have none and are kept only as latest. Orbax
  copies the arrays to the host and writes them in the background."""
  mesh = jax.sharding.Mesh(np.array(sorted(devices, key=lambda d: d.id)), ('devices',))
  state = _one_copy(replicated_state, mesh)
  manager.save(step, args=ocp.args.StandardSave(state),
               metrics=None if top1 is None else {'top1': float(top1)},
               custom_metadata={'devices': len(devices)})


def _read(step_directory, like, partial: bool = False):
  """The checkpoint in `step_directory` as numpy arrays in the structure and
  shapes of `like` (arrays or shape structs; with `partial`, a subset of what
  was saved). As numpy, never onto the devices that wrote it: a run saved by
  several hosts names devices this process does not have.

  Earlier kdjax saved a one-device run with every leaf on a leading axis of 1
  (the pmap's device axis); such a checkpoint is read without that axis."""
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), like)
  restored = ocp.PyTreeCheckpointer().restore(
      step_directory / ITEM,
      args=ocp.args.PyTreeRestore(like, restore_args=as_numpy, partial_restore=partial))
  pairs = [(jax.tree_util.keystr(path), np.shape(saved), np.shape(wanted))
           for (path, saved), wanted in zip(jax.tree_util.tree_flatten_with_path(restored)[0],
                                            jax.tree.leaves(like))]
  if all(saved == wanted for _, saved, wanted in pairs):
    return restored
  if all(saved == (1, *wanted) for _, saved, wanted in pairs):
    logging.info('%s was saved with a device axis (one device, an earlier kdjax); read '
                 'as one copy.', step_directory)
    return jax.tree.map(lambda x: x[0], restored)
  name, saved, wanted = next(p for p in pairs if p[1] != p[2])
  raise CheckpointMismatchError(
      f'{step_directory} holds another model: {name} has shape {saved} there but {wanted} '
      'in this one. Use the config (and kdjax version) that wrote it, or another directory.')


def saved_device_count(manager: ocp.CheckpointManager, step: int) -> Optional[int]:
  """How many devices trained the run saved at `step` (None for checkpoints
  written before kdjax recorded it)."""
  return (manager.metadata(step).custom_metadata or {}).get('devices')


def _steps(workdir):
  """The steps of workdir's complete checkpoints (orbax renames a save to its
  step only once it is complete), oldest first."""
  directory = _directory(workdir)
  if not directory.exists():
    return []
  return sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit())


def resume(workdir: str, keep_last: int, state) -> Tuple[ocp.CheckpointManager, Any]:
  """(manager, the latest checkpoint restored as numpy into `state`'s
  structure, or `state` itself if there is none).

  If the latest checkpoint cannot be read, it is moved to
  workdir/corrupt_checkpoints (so that training can save that step again) and
  the one before it is restored, saying so. If that fails too, or there is no
  other, everything is put back and the error says what to do. A checkpoint of
  another model is refused at once (CheckpointMismatchError)."""
  steps = _steps(workdir)
  if not steps:
    return create_manager(workdir, keep_last), state
  try:
    state = _read(_directory(workdir) / str(steps[-1]), state)
    return create_manager(workdir, keep_last), state
  except CheckpointMismatchError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (orbax raises many kinds)
    problem = f'{type(e).__name__}: {e}'
    if len(steps) < 2:
      raise workdir_lib.WorkdirError(
          f'The only checkpoint in {_directory(workdir)} cannot be read ({problem}). '
          'Move it away to train from scratch, or use a new --workdir.') from e
  latest = _directory(workdir) / str(steps[-1])
  moved = workdir_lib.path(workdir) / CORRUPT / str(steps[-1])
  moved.parent.mkdir(parents=True, exist_ok=True)
  latest.rename(moved)
  try:
    state = _read(_directory(workdir) / str(steps[-2]), state)
    manager = create_manager(workdir, keep_last)
  except Exception as e:  # pylint: disable=broad-except
    moved.rename(latest)
    if isinstance(e, CheckpointMismatchError):
      raise
    raise workdir_lib.WorkdirError(
        f'Neither of the last two checkpoints in {_directory(workdir)} (steps '
        f'{steps[-1]} and {steps[-2]}) can be read ({type(e).__name__}: {e}). Move them '
        'away to train from scratch, or use a new --workdir.') from e
  logging.warning('The latest checkpoint (step %d) cannot be read (%s); resuming from '
                  'step %d instead. The unreadable one was moved to %s.', steps[-1],
                  problem, steps[-2], moved)
  return manager, state


def reader(workdir: str) -> ocp.CheckpointManager:
  """A read-only manager of workdir's checkpoints (steps, the best by test top-1)."""
  return ocp.CheckpointManager(
      _directory(workdir), item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(
          read_only=True, save_interval_steps=0, create=False, best_fn=_top1,
          best_mode='max'))


def restore_variables(workdir: str, step: int, abstract_variables):
  """The collections in `abstract_variables` (e.g. params and batch_stats, not
  the optimizer state) of workdir's checkpoint of `step`, as numpy arrays."""
  return _read(_directory(workdir) / str(step), abstract_variables, partial=True)


def restore_best_variables(workdir: str, abstract_variables) -> Tuple[int, Any]:
  """(step, variables) of workdir's best checkpoint by test top-1 (the latest if
  none has metrics), as restore_variables reads them."""
  manager = reader(workdir)
  step = manager.best_step()
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f'{_directory(workdir)} holds no complete checkpoint.')
  return step, restore_variables(workdir, step, abstract_variables)


def save_variables(directory: str, variables) -> None:
  """Saves fixed variables (a converted teacher) as step 0 under directory/checkpoints."""
  manager = ocp.CheckpointManager(_directory(directory),
                                  item_handlers=ocp.StandardCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(create=True))
  manager.save(0, args=ocp.args.StandardSave(variables))
  manager.wait_until_finished()
