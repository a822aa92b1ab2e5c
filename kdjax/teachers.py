"""Frozen teachers: a model, its variables and its own input normalization.

A teacher directory holds `model.json` (architecture, class count, constructor
arguments, normalization) and orbax checkpoints under `checkpoints/`. Every
kdjax workdir is one (its best checkpoint teaches), so any finished run can
teach another. The study's teachers come from PyTorch checkpoints:

  python -m kdjax.teachers fetch repvgg_a0   # or resnet50; --file=PATH for a local copy
  python -m kdjax.teachers fetch resnet34_imagenet   # torchvision's, for ImageNet

downloads one (tensorflow-datasets' download manager: progress, a finished
download is kept and reused), checks its published sha256, converts it and
stores it in the directory the row configs read (kdjax.study.TEACHERS).
"""
import dataclasses
import functools
import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp

from kdjax import checkpoint
from kdjax import convert
from kdjax import errors
from kdjax import models
from kdjax import study
from kdjax import workdir as workdir_lib

# How a teacher's BatchNorm layers normalize: with their stored running
# statistics (eval mode, RepVGG fused), or with the statistics of the batch the
# teacher sees (PyTorch's train mode, RepVGG in its three-branch form; the
# stored statistics are never updated).
BN_MODES = ('running', 'batch')


@dataclasses.dataclass(frozen=True)
class Teacher:
  model: nn.Module
  variables: Dict[str, Any]  # {'params', 'batch_stats'} as numpy arrays
  mean: Sequence[float]
  std: Sequence[float]
  num_classes: int
  description: str  # where it came from, for the log


def fetch_instructions(name: str, path: str) -> str:
  """How to put the study's teacher `name` into directory `path`."""
  teacher = study.TEACHERS[name]
  out = '' if path == teacher.directory else f' --out={path}'
  return (f'The study\'s {name} teacher is a PyTorch checkpoint ({teacher.source}). Run '
          f'`python -m kdjax.teachers fetch {name}{out}`; without internet, download '
          f'{teacher.filename} from {teacher.url} on a connected machine, copy it here and '
          f'run `python -m kdjax.teachers fetch {name}{out} --file={teacher.filename}`.')


def directory_name(path: str) -> str:
  """'teachers/resnet50/' -> 'resnet50': how a study teacher's directory is named."""
  return os.path.basename(os.path.normpath(path))


def _read_model_file(path):
  model_file = workdir_lib.path(path) / workdir_lib.MODEL_FILE
  study_teacher = directory_name(path)
  exists = workdir_lib.path(path).is_dir()
  if not exists and study_teacher in study.TEACHERS:
    raise errors.TeacherError(f'No teacher at {path!r}. {fetch_instructions(study_teacher, path)}')
  if not exists:
    raise errors.TeacherError(
        f'No teacher at {path!r}. A teacher is a kdjax workdir (train one with '
        'main.py) or a converted PyTorch checkpoint; set --config.teacher to its '
        'directory.')
  if not workdir_lib.has_model_file(path):
    raise errors.TeacherError(f'{path!r} has no {workdir_lib.MODEL_FILE}, so it is not a kdjax workdir or '
                       'converted teacher; set --config.teacher to one.')
  try:
    return json.loads(model_file.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise errors.TeacherError(f'Cannot read {model_file}: {e}. Re-create the teacher.') from e


def tuples(tree):
  """JSON's lists as the tuples model constructors take."""
  if isinstance(tree, dict):
    return {k: tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(tuples(v) for v in tree)
  return tree


def image_shape(spec) -> Tuple[int, ...]:
  """The shape of the images the model of model.json `spec` reads; model
  files before the shape was recorded are all of CIFAR-shaped models."""
  return tuple(spec.get('image_shape', convert.CIFAR_SHAPE))


def abstract_variables(model, spec):
  """The shapes of `model`'s variables, built for `spec`'s images."""
  return jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, *image_shape(spec))), train=False))


def _check_bn(bn: str) -> None:
  if bn not in BN_MODES:
    raise errors.TeacherError(f"A teacher's BatchNorm mode is one of {list(BN_MODES)}, not {bn!r}; "
                       'set --config.teacher_bn to one of them.')


def random_teacher(name: str, num_classes: int, dtype=jnp.float32, seed: int = 0,
                   mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), bn: str = 'running',
                   **kwargs) -> Teacher:
  """A teacher of architecture `name` (constructor `kwargs`) with random weights,
  in the form a loaded one has for BatchNorm mode `bn`: it times and tests like
  a real one."""
  _check_bn(bn)
  model = models.get_model(name, num_classes=num_classes, **kwargs)
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)))
  if bn == 'running':
    kwargs, variables = models.inference_form(name, kwargs, variables)
  return Teacher(models.get_model(name, num_classes=num_classes, dtype=dtype, **kwargs),
                 variables, tuple(mean), tuple(std), num_classes, f'random {name}')


def load(path: str, dtype=jnp.float32, num_classes: Optional[int] = None,
         dataset: str = '', bn: str = 'running') -> Teacher:
  """The teacher in directory `path`, computing in `dtype`, in the form that
  BatchNorm mode `bn` (BN_MODES) needs: with 'running' in its fastest eval-mode
  form (RepVGG fused), with 'batch' in its training form. With `num_classes`,
  one that predicts another number of classes (than `dataset` has) is refused."""
  _check_bn(bn)
  spec = _read_model_file(path)
  if num_classes is not None and spec['num_classes'] != num_classes:
    raise errors.TeacherError(
        f'The teacher in {path} predicts {spec["num_classes"]} classes, but {dataset} has '
        f'{num_classes}; use a teacher trained on {dataset}.')
  kwargs = tuples(spec['kwargs'])
  # A teacher's self-distillation heads, if any, are never read.
  kwargs.pop('heads', None)
  name, classes = spec['model'], spec['num_classes']
  model = models.get_model(name, num_classes=classes, dtype=dtype, **kwargs)
  try:
    step, variables = checkpoint.restore_best_variables(path, abstract_variables(model, spec))
  except (FileNotFoundError, ValueError) as e:
    raise errors.TeacherError(f'Cannot restore the teacher in {path!r}: {e}') from e
  if bn == 'running':
    kwargs, variables = models.inference_form(name, kwargs, variables)
  return Teacher(model=models.get_model(name, num_classes=classes, dtype=dtype, **kwargs),
                 variables=variables, mean=tuple(spec['mean']), std=tuple(spec['std']),
                 num_classes=classes,
                 description=f'{path} ({name}, checkpoint step {step})')


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 3 or argv[1] != 'fetch' or argv[2] not in study.TEACHERS:
    raise app.UsageError(f'Usage: python -m kdjax.teachers fetch NAME [--file=PATH] '
                         f'[--out=DIR], NAME one of {sorted(study.TEACHERS)}.')
  teacher = study.TEACHERS[argv[2]]
  print(errors.exit_on_user_error(
      lambda: convert.fetch(teacher, FLAGS.out or teacher.directory, FLAGS.file)))


if __name__ == '__main__':
  flags.DEFINE_string('file', None, 'Convert this local copy of the checkpoint instead of '
                      'downloading it (its checksum is checked the same way).')
  flags.DEFINE_string('out', None, 'Teacher directory to write (default: where the row '
                      'configs read it, e.g. teachers/repvgg_a0).')
  app.run(main)
