"""A run's workdir: its path (local, or any URL etils.epath and orbax accept, such
as gs://), its lock, and the checks made on it before anything in it is written."""
import contextlib
import datetime
import fcntl
import json
import logging
import os
import shutil
import socket
import uuid
from typing import Any, Dict

from etils import epath

from kdjax import errors

CONFIG_FILE = 'config.json'
# How to rebuild the directory's model (architecture, class count, constructor
# arguments, normalization): a directory with one can teach (kdjax.teachers).
MODEL_FILE = 'model.json'
LOCK_FILE = '.kdjax.lock'


class WorkdirError(errors.UserError, ValueError):
  """A workdir this run may not use, with what to do instead."""


def path(workdir: str) -> epath.Path:
  """The workdir as a path: local ones made absolute (orbax wants that), URLs
  (gs://bucket/run) as they are."""
  if '://' in os.fspath(workdir):
    return epath.Path(workdir)
  return epath.Path(workdir).absolute()


def write_model_file(directory: str, model: str, num_classes: int,
                     kwargs: Dict[str, Any], mean, std, image_shape) -> None:
  """Records how to rebuild a directory's model, so it can later be a teacher:
  also its input's (height, width, channels)."""
  spec = {'model': model, 'num_classes': num_classes, 'kwargs': kwargs,
          'mean': [float(m) for m in mean], 'std': [float(s) for s in std],
          'image_shape': [int(n) for n in image_shape]}
  write_text(path(directory) / MODEL_FILE, json.dumps(spec, indent=2))


def has_model_file(directory: str) -> bool:
  """Whether `directory` holds a model file, i.e. can teach."""
  return (path(directory) / MODEL_FILE).exists()


def is_local(workdir: str) -> bool:
  return '://' not in os.fspath(workdir)


def write_text(file: epath.Path, text: str) -> None:
  """Replaces `file`'s content; a kill mid-write leaves the old content (the
  rename is atomic on local disks)."""
  file.parent.mkdir(parents=True, exist_ok=True)
  partial = file.parent / f'.{file.name}.{uuid.uuid4().hex}'
  partial.write_text(text)
  partial.replace(file)


def config_as_json(config) -> Dict[str, Any]:
  """The config as plain JSON values (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json())


def completed(saved: Dict[str, Any], defaults) -> Dict[str, Any]:
  """A saved config.json's fields, plus the fields it lacks at their values in
  `defaults` (a config of every field's default, or None for none): kdjax adds
  fields with defaults that leave earlier runs unchanged, so a run saved
  before a field existed is a run with that field at its default."""
  return {**(config_as_json(defaults) if defaults is not None else {}), **saved}


def check_config(config, workdir: str, defaults=None) -> None:
  """Refuses a workdir whose saved config differs, its missing fields taken at
  their `defaults` (see `completed`), so that earlier runs resume."""
  file = path(workdir) / CONFIG_FILE
  if not file.exists():
    return
  saved = completed(json.loads(file.read_text()), defaults)
  current = config_as_json(config)
  differing = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
  if differing:
    changes = ', '.join(f'{k}: {saved.get(k)!r} -> {current.get(k)!r}' for k in differing)
    raise WorkdirError(
        f'{workdir} holds a run of a different config ({changes}). Resuming it '
        'would mix two experiments. Pass the same config to resume, use a new '
        '--workdir, or pass --fresh to move the old run aside and start again here.')


def move_aside(workdir: str) -> str:
  """Moves an existing workdir to <workdir>.previous-<time> (nothing is deleted);
  returns where it went, or '' if there was nothing to move. Called holding
  the workdir's lock, whose file stays behind with the caller."""
  directory = path(workdir)
  if not directory.exists() or all(p.name == LOCK_FILE for p in directory.iterdir()):
    return ''
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  destination = directory.parent / f'{directory.name}.previous-{stamp}'
  directory.rename(destination)
  (destination / LOCK_FILE).unlink(missing_ok=True)
  return os.fspath(destination)


def check_writable(workdir: str) -> None:
  """Creates the workdir if needed and proves a file can be written in it."""
  probe = path(workdir) / f'.kdjax-write-test-{uuid.uuid4().hex}'
  try:
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise _unwritable(workdir, e) from e


def _unwritable(workdir: str, error: OSError) -> 'WorkdirError':
  return WorkdirError(f'Cannot write to --workdir={workdir} ({type(error).__name__}: '
                      f'{error}); choose a directory you can write to.')


def check_free_space(workdir: str, checkpoint_bytes: int, num_checkpoints: int) -> None:
  """Refuses to start when a local disk cannot hold the checkpoints the run
  keeps (object stores have no such limit to check)."""
  if not is_local(workdir):
    return
  needed = checkpoint_bytes * num_checkpoints
  free = shutil.disk_usage(path(workdir)).free
  if free < needed:
    raise WorkdirError(
        f'The disk of --workdir={workdir} has {free / 2**20:.1f} MiB free, but this run '
        f'keeps up to {num_checkpoints} checkpoints of {checkpoint_bytes / 2**20:.1f} MiB. '
        'Free some space, lower --config.keep_checkpoints, or use another --workdir.')


@contextlib.contextmanager
def exclusive(workdir: str):
  """Holds the workdir's lock for the `with` block, so a second run in the same
  workdir stops at once, writing nothing, and names this one. An flock: the
  kernel releases it when the process ends however it ends, so a lock left by a
  dead run is taken over (NFS clients hold it on the server). Object stores
  (gs://) have no lock: there kdjax warns and proceeds."""
  if not is_local(workdir):
    logging.warning('%s is on an object store, which kdjax cannot lock: make sure one run '
                    'at a time uses it.', workdir)
    yield
    return
  directory = path(workdir)
  try:
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise _unwritable(workdir, e) from e
  try:
    try:
      fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(descriptor, 1024, 0).decode(errors='replace').strip() or 'unknown'
      raise WorkdirError(
          f'{workdir} is in use by another run ({holder}); two runs in one workdir would '
          'overwrite each other\'s checkpoints. Wait for that run to end (or stop it: Ctrl-C '
          'saves it), or pass another --workdir.') from None
    previous = os.pread(descriptor, 1024, 0).decode(errors='replace').strip()
    if previous:  # a clean exit clears it: this run ended without one
      logging.warning('Took over the lock of a run that ended without releasing it (%s).',
                      previous)
    holder = (f'host {socket.gethostname()}, pid {os.getpid()}, started '
              f'{datetime.datetime.now().isoformat(sep=" ", timespec="seconds")}')
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, holder.encode(), 0)
    try:
      yield
    finally:
      os.ftruncate(descriptor, 0)
  finally:
    os.close(descriptor)  # releases the lock
