"""Training methods, each a sum of loss terms from kdjax.losses.

A method is 'baseline' (cross-entropy only) or distillation terms joined by '_'
in the order of TERMS, e.g. 'offline', 'self', 'offline_self', 'feature_self',
'online_relation'. `get_loss_fn` turns one into
  loss_fn(params, batch_stats, pixels, targets, teacher_variables)
      -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented (and, with mixup, mixed) images in [0, 1] and
`targets` the matching [batch, classes] label distributions. Only `params` is
differentiated; the teacher's variables are an input, never trained.
"""
import dataclasses
from typing import Callable, FrozenSet, Optional, Sequence, Tuple

import jax
from jax import lax
import jax.numpy as jnp

from kdjax import losses

BASELINE = 'baseline'
# Each term adds to every student's cross-entropy:
TERMS = (
    'offline',  # Hinton et al. (2015): KL to a frozen teacher's softened logits
    'feature',  # FitNets (Romero et al., 2015): L2 from a regressed stage to the teacher's
    'relation',  # RKD (Park et al., 2019): distances and angles among pooled features
    'online',  # Deep Mutual Learning (Zhang et al., 2018): KL to every peer's logits
    'self',  # Be Your Own Teacher (Zhang et al., 2019): intermediate heads learn from the final
)
TEACHER_TERMS = frozenset({'offline', 'feature', 'relation'})


@dataclasses.dataclass(frozen=True)
class Method:
  terms: FrozenSet[str]

  @property
  def uses_teacher(self) -> bool:
    return bool(self.terms & TEACHER_TERMS)

  @property
  def uses_heads(self) -> bool:  # the students carry intermediate heads
    return 'self' in self.terms

  @property
  def uses_hint(self) -> bool:  # the students carry a FitNets regressor
    return 'feature' in self.terms

  @property
  def uses_peers(self) -> bool:  # several students learn together
    return 'online' in self.terms


def get_method(name: str) -> Method:
  if name == BASELINE:
    return Method(frozenset())
  terms = name.split('_')
  canonical = '_'.join(t for t in TERMS if t in terms)
  if not set(terms) <= set(TERMS) or len(set(terms)) != len(terms):
    raise ValueError(
        f'Unknown method {name!r}. A method is {BASELINE!r} or one or more of '
        f'{list(TERMS)} joined by "_" (e.g. offline_self); set --config.method to one.')
  if name != canonical:
    raise ValueError(f'Write method {name!r} as {canonical!r}: terms go in the order '
                     f'{list(TERMS)}, so each method has one name.')
  return Method(frozenset(terms))


def hint_source(hint_hw: Tuple[int, int], teacher_stage_shapes: Sequence[Tuple[int, ...]]) -> int:
  """Index of the teacher stage a FitNets hint of spatial size `hint_hw` matches:
  the deepest one of that size."""
  matching = [i for i, shape in enumerate(teacher_stage_shapes)
              if tuple(shape[-3:-1]) == tuple(hint_hw)]
  if not matching:
    raise ValueError(
        f'No teacher stage has the {hint_hw[0]}x{hint_hw[1]} grid of the student\'s hint '
        f'stage (teacher stages: {[tuple(s[-3:-1]) for s in teacher_stage_shapes]}); set '
        '--config.hint_stage to a student stage with a grid the teacher has.')
  return matching[-1]


def students(outputs):
  """Every student's outputs: the model's own, then its peers' (a cohort's)."""
  return (outputs, *outputs.get('peers', ()))


def _heads_term(outputs, targets, config):
  """Be Your Own Teacher on the intermediate heads: each learns from the labels,
  from the final logits (KL) and from the final feature (L2); the final outputs
  are gradient-free targets."""
  w = config.self_kd_weight
  total = 0.0
  for logits, feature in zip(outputs['head_logits'], outputs['head_features']):
    total += ((1 - w) * losses.soft_cross_entropy(logits, targets)
              + w * losses.kl_divergence(logits, outputs['logits'],
                                         config.self_kd_temperature)
              + config.self_feature_weight * losses.feature_l2(feature, outputs['feature']))
  return total


def _label_weight(terms, config):
  # Hinton's (1 - w) when a teacher softens the final classifier's targets; with
  # heads alone, Be Your Own Teacher's reference code also puts its (1 - w) there.
  if 'offline' in terms:
    return 1 - config.kd_weight
  if 'self' in terms:
    return 1 - config.self_kd_weight
  return 1.0


def _student_loss(outputs, peer_logits, targets, teacher, config, terms, gather):
  """One student's loss. `teacher` holds the teacher's outputs, `peer_logits`
  the other students' logits, `gather` collects an array over the global batch."""
  logits = outputs['logits']
  loss = _label_weight(terms, config) * losses.soft_cross_entropy(logits, targets)
  if 'offline' in terms:
    loss += config.kd_weight * losses.kl_divergence(logits, teacher['logits'],
                                                    config.kd_temperature)
  if 'feature' in terms:
    hint = outputs['hint']
    stages = teacher['stage_features']
    source = stages[hint_source(hint.shape[1:3], [s.shape for s in stages])]
    loss += config.hint_weight * losses.mean_squared_error(hint, source)
  if 'relation' in terms:
    # Relations among the whole global batch, as on one device.
    student, target = gather(outputs['feature']), gather(teacher['feature'])
    loss += (config.rkd_distance_weight * losses.rkd_distance(student, target)
             + config.rkd_angle_weight * losses.rkd_angle(student, target))
  if 'online' in terms:
    loss += config.online_weight * sum(
        losses.kl_divergence(logits, peer, config.online_temperature)
        for peer in peer_logits) / len(peer_logits)
  if 'self' in terms:
    loss += _heads_term(outputs, targets, config)
  return loss


def get_loss_fn(config, student_apply: Callable, teacher_apply: Optional[Callable] = None,
                axis_name: Optional[str] = None):
  """The loss_fn of `config.method`.

  student_apply(params, batch_stats, pixels) -> (outputs, new_batch_stats) runs
  the student (a cohort.Cohort for online methods) in training mode;
  teacher_apply(variables, pixels) -> outputs runs the frozen teacher in eval
  mode (each with its own normalization). Under a map over `axis_name`,
  relation terms see the global batch.
  """
  method = get_method(config.method)
  if method.uses_teacher and teacher_apply is None:
    raise ValueError(f'Method {config.method!r} needs a teacher.')

  def gather(x):
    return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)

  def loss_fn(params, batch_stats, pixels, targets, teacher_variables):
    outputs, new_batch_stats = student_apply(params, batch_stats, pixels)
    teacher = None
    if method.uses_teacher:
      teacher = jax.lax.stop_gradient(teacher_apply(teacher_variables, pixels))
    # Every student's loss counts; peers' logits are gradient-free targets
    # (kl_divergence stops them), so each student's gradient is its own loss's.
    every = students(outputs)
    all_logits = [s['logits'] for s in every]
    loss = sum(_student_loss(s, all_logits[:i] + all_logits[i + 1:], targets, teacher,
                             config, method.terms, gather)
               for i, s in enumerate(every))
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == jnp.argmax(targets, -1))
    return loss, (new_batch_stats, {'loss': loss, 'accuracy': accuracy})
  return loss_fn
