"""One loss per training method, composed from kdjax.losses.

`get_loss_fn` turns a method into
  loss_fn(params, batch_stats, pixels, targets, teacher_variables)
      -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented (and, with mixup, mixed) images in [0, 1] and
`targets` the matching [batch, classes] label distributions. Only `params` is
differentiated; the teacher's variables are an input, never trained.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from kdjax import losses


def _offline_term(logits, targets, teacher_logits, config):
  """Hinton et al. (2015): (1 - w) * CE(targets) + w * T^2 KL(teacher || student)."""
  w = config.kd_weight
  return ((1 - w) * losses.soft_cross_entropy(logits, targets)
          + w * losses.kl_divergence(logits, teacher_logits, config.kd_temperature))


def _heads_term(outputs, targets, config):
  """Be Your Own Teacher (Zhang et al., 2019) on the intermediate heads: each
  learns from the labels, from the final logits (KL) and from the final feature
  (L2); the final outputs are gradient-free targets."""
  w = config.self_kd_weight
  total = 0.0
  for logits, feature in zip(outputs['head_logits'], outputs['head_features']):
    total += ((1 - w) * losses.soft_cross_entropy(logits, targets)
              + w * losses.kl_divergence(logits, outputs['logits'],
                                         config.self_kd_temperature)
              + config.self_feature_weight * losses.feature_l2(feature, outputs['feature']))
  return total


def _baseline(outputs, targets, teacher_logits, config):
  del teacher_logits, config
  return losses.soft_cross_entropy(outputs['logits'], targets)


def _offline(outputs, targets, teacher_logits, config):
  return _offline_term(outputs['logits'], targets, teacher_logits, config)


def _self(outputs, targets, teacher_logits, config):
  # As in the reference code, the final classifier's CE carries the heads' (1 - w).
  del teacher_logits
  return ((1 - config.self_kd_weight) * losses.soft_cross_entropy(outputs['logits'], targets)
          + _heads_term(outputs, targets, config))


def _offline_self(outputs, targets, teacher_logits, config):
  # The teacher teaches the final classifier; the final classifier teaches the heads.
  return (_offline_term(outputs['logits'], targets, teacher_logits, config)
          + _heads_term(outputs, targets, config))


@dataclasses.dataclass(frozen=True)
class Method:
  loss: Callable  # (student outputs, targets, teacher logits or None, config) -> scalar
  uses_teacher: bool
  uses_heads: bool  # the student carries intermediate heads


METHODS = {
    'baseline': Method(_baseline, uses_teacher=False, uses_heads=False),
    'offline': Method(_offline, uses_teacher=True, uses_heads=False),
    'self': Method(_self, uses_teacher=False, uses_heads=True),
    'offline_self': Method(_offline_self, uses_teacher=True, uses_heads=True),
}


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}. Known methods: {sorted(METHODS)}. '
                     'Set --config.method to one of them.')
  return METHODS[name]


def get_loss_fn(config, student_apply: Callable, teacher_apply: Callable = None):
  """The loss_fn of `config.method`.

  student_apply(params, batch_stats, pixels) -> (outputs, new_batch_stats) runs
  the student in training mode; teacher_apply(variables, pixels) -> outputs runs
  the frozen teacher in eval mode (each with its own normalization).
  """
  method = get_method(config.method)
  if method.uses_teacher and teacher_apply is None:
    raise ValueError(f'Method {config.method!r} needs a teacher.')

  def loss_fn(params, batch_stats, pixels, targets, teacher_variables):
    outputs, new_batch_stats = student_apply(params, batch_stats, pixels)
    teacher_logits = None
    if method.uses_teacher:
      teacher_logits = jax.lax.stop_gradient(
          teacher_apply(teacher_variables, pixels)['logits'])
    loss = method.loss(outputs, targets, teacher_logits, config)
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == jnp.argmax(targets, -1))
    return loss, (new_batch_stats, {'loss': loss, 'accuracy': accuracy})
  return loss_fn
