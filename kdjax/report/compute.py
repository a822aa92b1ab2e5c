"""What a run computed: the images its student and its teacher forwarded, and
the FLOPs of their training, counted by XLA's cost analysis of the models (not
a table by hand).

A step forwards `batch_size` x method.groups student images: CS-KD's partners
(composition 'pairs') forward without a backward pass, DLB's carried examples
with one. The student's FLOPs an image are XLA's count of a forward and
backward pass in training mode (heads included, when the method has them),
or of the forward alone for the partners; the teacher's, of its forward. The
method's own learned parts (CRD's embeddings, ReviewKD's fusion) and
evaluation are left out.
"""
import dataclasses
import functools
import json
import os
from typing import Any, Dict, Optional, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from kdjax import data
from kdjax import methods
from kdjax import models
from kdjax import teachers
from kdjax import workdir as workdir_lib
from kdjax.report import runs as runs_lib

_BATCH = 2  # images per counted call (BatchNorm's statistics need 2)


@dataclasses.dataclass(frozen=True)
class Compute:
  student_images: float
  student_flops: float
  teacher_flops: Optional[float]  # None without a teacher; nan where its model is unknown


def _cost(fn, *args) -> float:
  cost = jax.jit(fn).lower(*args).compile().cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost)['flops'] / _BATCH


@functools.lru_cache(maxsize=None)
def flops_per_image(name: str, kwargs_json: str, num_classes: int,
                    image_shape: Tuple[int, ...]) -> Tuple[float, float]:
  """(training, forward) FLOPs an image of model `name` (constructor arguments
  `kwargs_json`), by XLA's cost analysis: a forward and backward pass in
  training mode through every output, and a forward pass alone."""
  model = models.get_model(name, num_classes, **teachers.tuples(json.loads(kwargs_json)))
  pixels = jax.ShapeDtypeStruct((_BATCH, *image_shape), jnp.float32)
  variables = jax.eval_shape(functools.partial(model.init, train=False),
                             jax.random.PRNGKey(0), pixels)

  def forward(params, batch_stats, x):
    outputs, _ = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                             mutable=['batch_stats'])
    # Every output counts, so that no head is left out as unused; but the
    # position logits, which only SDD reads (XLA drops them elsewhere).
    del outputs['position_logits']
    return sum(jnp.mean(leaf) for leaf in jax.tree.leaves(outputs))

  train = jax.grad(forward)
  args = (variables['params'], variables['batch_stats'], pixels)
  return _cost(train, *args), _cost(forward, *args)


def _student(config) -> Tuple[str, Dict[str, Any]]:
  return methods.get_method(config.method).model_spec(config)


def _teacher_spec(run: runs_lib.Run, by_folder: Dict[str, runs_lib.Run]):
  """(name, kwargs) of the run's teacher: its directory's model.json, else the
  reported run in a folder of the teacher's directory's name; None if neither."""
  path = run.config['teacher']
  if workdir_lib.has_model_file(path):
    spec = json.loads((workdir_lib.path(path) / workdir_lib.MODEL_FILE).read_text())
    return spec['model'], spec['kwargs']
  teacher_run = by_folder.get(run.teacher_name)
  return _student(ml_collections.ConfigDict(teacher_run.config)) if teacher_run else None


UNKNOWN = Compute(float('nan'), float('nan'), float('nan'))


def of_run(run: runs_lib.Run, by_folder: Dict[str, runs_lib.Run]) -> Compute:
  """The run's Compute; `by_folder` maps report folders to their runs, where
  a teacher trained by kdjax may be found. UNKNOWN (logged) for a config
  this kdjax cannot build a model of."""
  try:
    return _of_run(run, by_folder)
  except (ValueError, KeyError, TypeError) as e:
    logging.warning('No compute count for %s: %s', run.workdir, e)
    return UNKNOWN


def _of_run(run, by_folder):
  config = ml_collections.ConfigDict(run.config)
  method = methods.get_method(config.method)
  info = data.describe(config.dataset, config.image_size)
  examples = run.records[-1]['step'] * config.batch_size  # per group of the batch
  count = lambda spec: flops_per_image(spec[0], json.dumps(spec[1], sort_keys=True),
                                       info.num_classes, tuple(info.image_shape))
  train, forward = count(_student(config))
  student = examples * (train * (2 if method.composition == 'carry' else 1)
                        + (forward if method.composition == 'pairs' else 0))
  teacher = None
  if method.uses_teacher:
    spec = _teacher_spec(run, by_folder)
    teacher = examples * method.groups * count(spec)[1] if spec else float('nan')
  return Compute(examples * method.groups, student, teacher)


def folders(all_runs) -> Dict[str, runs_lib.Run]:
  """Each finished run by the name of its folder (seed folders by their row's)."""
  named = {}
  for run in all_runs:
    if run.finished:
      named.setdefault(os.path.basename(os.path.normpath(run.workdir)), run)
      named.setdefault(runs_lib.label(run), run)
  return named
