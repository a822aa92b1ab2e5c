"""Frozen teachers: a model, its variables and its own input normalization.

A teacher directory holds `model.json` (architecture, class count, constructor
arguments, normalization) and orbax checkpoints under `checkpoints/`. Every
kdjax workdir is one (its best checkpoint teaches), so any finished run can
teach another.
"""
import dataclasses
import json
import os
from typing import Any, Dict, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax import checkpoint
from kdjax import models

MODEL_FILE = 'model.json'


class TeacherError(ValueError):
  """A teacher that cannot be used, with what to do about it."""


@dataclasses.dataclass(frozen=True)
class Teacher:
  model: nn.Module
  variables: Dict[str, Any]  # {'params', 'batch_stats'} as numpy arrays
  mean: Sequence[float]
  std: Sequence[float]
  num_classes: int
  description: str  # where it came from, for the log


def write_model_file(directory: str, model: str, num_classes: int,
                     kwargs: Dict[str, Any], mean, std) -> None:
  """Records how to rebuild a directory's model, so it can later be a teacher."""
  spec = {'model': model, 'num_classes': num_classes, 'kwargs': kwargs,
          'mean': [float(m) for m in mean], 'std': [float(s) for s in std]}
  with open(os.path.join(directory, MODEL_FILE), 'w') as f:
    json.dump(spec, f, indent=2)


def _read_model_file(path):
  model_file = os.path.join(path, MODEL_FILE)
  if not os.path.isdir(path):
    raise TeacherError(
        f'No teacher at {path!r}. A teacher is a kdjax workdir (train one with '
        'main.py) or a converted PyTorch checkpoint; set --config.teacher to its '
        'directory.')
  if not os.path.exists(model_file):
    raise TeacherError(f'{path!r} has no {MODEL_FILE}, so it is not a kdjax workdir or '
                       'converted teacher; set --config.teacher to one.')
  try:
    with open(model_file) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise TeacherError(f'Cannot read {model_file}: {e}. Re-create the teacher.') from e


def load(path: str, dtype=jnp.float32) -> Teacher:
  """The teacher in directory `path`, computing in `dtype`."""
  spec = _read_model_file(path)
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in spec['kwargs'].items()}
  # A teacher only gives logits: its self-distillation heads, if any, stay unread.
  kwargs.pop('heads', None)
  model = models.get_model(spec['model'], num_classes=spec['num_classes'], dtype=dtype,
                           **kwargs)
  # Parameter shapes of these conv nets do not depend on the image size.
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
  try:
    step, variables = checkpoint.restore_best_variables(path, abstract)
  except (FileNotFoundError, ValueError) as e:
    raise TeacherError(f'Cannot restore the teacher in {path!r}: {e}') from e
  return Teacher(model=model, variables=variables, mean=tuple(spec['mean']),
                 std=tuple(spec['std']), num_classes=spec['num_classes'],
                 description=f'{path} ({spec["model"]}, checkpoint step {step})')
