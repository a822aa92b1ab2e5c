"""Whether a teacher fits a method and its students, settled before any data.

One trace of the teacher's outputs and, where a term needs them, one of the
students' stages (jax.eval_shape: shapes only, nothing computed) answer every
question a run asks of its teacher at start: the outputs its terms read, a
FitNets hint stage's grid, the pairing of stages by grid.
"""
import functools
from typing import Tuple

import jax
import jax.numpy as jnp

from kdjax import data
from kdjax import errors
from kdjax import methods
from kdjax import models


def _student_stages(config, method, info):
  """Each student's (name, stage output shapes), its model built without the
  parts that depend on the teacher."""
  name, kwargs = method.model_spec(config)
  plain = models.get_model(name, num_classes=info.num_classes, **kwargs)
  pixels = jax.ShapeDtypeStruct((1, *info.image_shape), jnp.float32)
  outputs = jax.eval_shape(lambda x: plain.init_with_output(
      jax.random.PRNGKey(0), x, train=False)[0], pixels)
  return [(student_name, [s.shape for s in student['stage_features']])
          for student_name, student in zip((config.model, *config.peers),
                                           methods.students(outputs))]


def _hint_channels(config, students, teacher_stages) -> Tuple[int, ...]:
  """Each student's FitNets regressor width: the channel count of the teacher
  stage that its stage config.hint_stage matches (methods.hint_source)."""
  channels = []
  for name, stages in students:
    if not 0 <= config.hint_stage < len(stages):
      raise errors.ConfigError('hint_stage', config.hint_stage, f'{name} has stages 0 to '
                               f'{len(stages) - 1}; set it to one of them.')
    try:
      hint = methods.hint_source(stages[config.hint_stage][1:3], teacher_stages)
    except ValueError as e:
      raise errors.ConfigError('hint_stage', config.hint_stage, str(e)) from None
    channels.append(teacher_stages[hint][-1])
  return tuple(channels)


def check(config, method: methods.Method, teacher, info: data.DatasetInfo) -> Tuple[int, ...]:
  """Refuses a teacher whose outputs or stages the method's terms cannot use
  with each student's (an output it lacks, a FitNets hint stage of a grid it
  lacks, stages that do not pair: methods.paired_stages); returns each
  student's hint regressor width (() without the feature term)."""
  pixels = jax.ShapeDtypeStruct((1, *info.image_shape), jnp.float32)
  taught = jax.eval_shape(functools.partial(teacher.model.apply, train=False),
                          teacher.variables, pixels)
  needed = {o for t in method.terms for o in methods.REGISTRY[t].teacher_outputs}
  missing = sorted(needed - set(taught))
  if missing:
    raise errors.ConfigError(
        'teacher', config.teacher, f'method {config.method!r} reads the teacher\'s '
        f'{missing}, which {teacher.description} does not give (a RepVGG teacher loaded '
        'for teacher_bn=running is fused and has no BatchNorm left: set '
        '--config.teacher_bn=batch).')
  if not (method.uses_hint or method.pairs_stages):
    return ()
  teacher_stages = [s.shape for s in taught['stage_features']]
  students = _student_stages(config, method, info)
  for _, stages in students if method.pairs_stages else ():
    try:
      methods.paired_stages(stages, teacher_stages)
    except ValueError as e:
      raise errors.ConfigError('teacher', config.teacher,
                               f'method {config.method!r} pairs stages, but {e}') from None
  return _hint_channels(config, students, teacher_stages) if method.uses_hint else ()
