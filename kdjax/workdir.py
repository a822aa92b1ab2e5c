"""Checks on a run's workdir, made before anything in it is written."""
import datetime
import json
import os
import shutil
import tempfile
from typing import Any, Dict

CONFIG_FILE = 'config.json'


def config_as_json(config) -> Dict[str, Any]:
  """The config as plain JSON values (tuples become lists), as config.json holds it."""
  return json.loads(config.to_json())


def check_config(config, workdir: str) -> None:
  """Refuses a workdir whose saved config differs."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  current = config_as_json(config)
  differing = sorted(k for k in saved.keys() | current.keys()
                     if saved.get(k) != current.get(k))
  if differing:
    changes = ', '.join(f'{k}: {saved.get(k)!r} -> {current.get(k)!r}' for k in differing)
    raise ValueError(
        f'{workdir} holds a run of a different config ({changes}). Resuming it '
        'would mix two experiments. Pass the same config to resume, use a new '
        '--workdir, or pass --fresh to move the old run aside and start again here.')


def move_aside(workdir: str) -> str:
  """Moves an existing workdir to <workdir>.previous-<time> (nothing is deleted);
  returns where it went, or '' if there was nothing to move."""
  if not os.path.exists(workdir) or not os.listdir(workdir):
    return ''
  stamp = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  destination = f'{os.path.normpath(workdir)}.previous-{stamp}'
  os.rename(workdir, destination)
  return destination


def check_writable(workdir: str) -> None:
  """Creates the workdir if needed and proves a file can be written in it."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir):
      pass
  except OSError as e:
    raise ValueError(f'Cannot write to --workdir={workdir} ({type(e).__name__}: {e}); '
                     'choose a directory you can write to.') from e


def check_free_space(workdir: str, checkpoint_bytes: int, num_checkpoints: int) -> None:
  """Refuses to start when the disk cannot hold the checkpoints the run keeps."""
  needed = checkpoint_bytes * num_checkpoints
  free = shutil.disk_usage(workdir).free
  if free < needed:
    raise ValueError(
        f'The disk of --workdir={workdir} has {free / 2**20:.1f} MiB free, but this run '
        f'keeps up to {num_checkpoints} checkpoints of {checkpoint_bytes / 2**20:.1f} MiB. '
        'Free some space, lower --config.keep_checkpoints, or use another --workdir.')
