"""Frozen teachers: a model, its variables and its own input normalization.

A teacher directory holds `model.json` (architecture, class count, constructor
arguments, normalization) and orbax checkpoints under `checkpoints/`. Every
kdjax workdir is one (its best checkpoint teaches), so any finished run can
teach another.
"""
import dataclasses
import json
import os
from typing import Any, Dict, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax import checkpoint
from kdjax import models

MODEL_FILE = 'model.json'


class StudyTeacher(NamedTuple):
  source: str  # where its PyTorch weights come from
  filename: str  # the file to convert
  top1: float  # its CIFAR-100 test top-1 (%) as the study reports it


STUDY_TEACHERS = {
    'repvgg_a0': StudyTeacher(
        'https://github.com/chenyaofo/pytorch-cifar-models/releases/download/'
        'repvgg/cifar100_repvgg_a0-2df1edd0.pt', 'cifar100_repvgg_a0-2df1edd0.pt', 75.22),
    'resnet50': StudyTeacher(
        'http://shape2prog.csail.mit.edu/repo/ResNet50_vanilla/ckpt_epoch_240.pth '
        "(RepDistiller's scripts/fetch_pretrained_teachers.sh; mdistiller's "
        'cifar_teachers.tar holds the same file)', 'ckpt_epoch_240.pth', 79.00),
}


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


def convert_instructions(name: str, path: str) -> str:
  """How to put the study's teacher `name` into directory `path`."""
  teacher = STUDY_TEACHERS[name]
  return (f'The study\'s {name} teacher is a PyTorch checkpoint: get {teacher.filename} '
          f'from {teacher.source} on a connected machine, then run: python -m kdjax.convert '
          f'--arch {name} --src {teacher.filename} --out {path}')


def directory_name(path: str) -> str:
  """'teachers/resnet50/' -> 'resnet50': how a study teacher's directory is named."""
  return os.path.basename(os.path.normpath(path))


def is_teacher(path: str) -> bool:
  return os.path.exists(os.path.join(path, MODEL_FILE))


def _read_model_file(path):
  model_file = os.path.join(path, MODEL_FILE)
  study_teacher = directory_name(path)
  if not os.path.isdir(path) and study_teacher in STUDY_TEACHERS:
    raise TeacherError(f'No teacher at {path!r}. {convert_instructions(study_teacher, path)}')
  if not os.path.isdir(path):
    raise TeacherError(
        f'No teacher at {path!r}. A teacher is a kdjax workdir (train one with '
        'main.py) or a converted PyTorch checkpoint; set --config.teacher to its '
        'directory.')
  if not is_teacher(path):
    raise TeacherError(f'{path!r} has no {MODEL_FILE}, so it is not a kdjax workdir or '
                       'converted teacher; set --config.teacher to one.')
  try:
    with open(model_file) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise TeacherError(f'Cannot read {model_file}: {e}. Re-create the teacher.') from e


def _tuples(tree):
  """JSON's lists as the tuples model constructors take."""
  if isinstance(tree, dict):
    return {k: _tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_tuples(v) for v in tree)
  return tree


def load(path: str, dtype=jnp.float32, num_classes: Optional[int] = None,
         dataset: str = '') -> Teacher:
  """The teacher in directory `path`, computing in `dtype`; with `num_classes`,
  one that predicts another number of classes (than `dataset` has) is refused."""
  spec = _read_model_file(path)
  if num_classes is not None and spec['num_classes'] != num_classes:
    raise TeacherError(
        f'The teacher in {path} predicts {spec["num_classes"]} classes, but {dataset} has '
        f'{num_classes}; use a teacher trained on {dataset}.')
  kwargs = _tuples(spec['kwargs'])
  # A teacher's self-distillation heads, if any, are never read.
  kwargs.pop('heads', None)
  name, classes = spec['model'], spec['num_classes']
  model = models.get_model(name, num_classes=classes, dtype=dtype, **kwargs)
  # Parameter shapes of these conv nets do not depend on the image size.
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
  try:
    step, variables = checkpoint.restore_best_variables(path, abstract)
  except (FileNotFoundError, ValueError) as e:
    raise TeacherError(f'Cannot restore the teacher in {path!r}: {e}') from e
  kwargs, variables = models.inference_form(name, kwargs, variables)
  return Teacher(model=models.get_model(name, num_classes=classes, dtype=dtype, **kwargs),
                 variables=variables, mean=tuple(spec['mean']), std=tuple(spec['std']),
                 num_classes=classes,
                 description=f'{path} ({name}, checkpoint step {step})')
