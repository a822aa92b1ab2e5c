"""Training methods, each a sum of loss terms from kdjax.losses.

A method is 'baseline' (cross-entropy only) or distillation terms joined by '_'
in the order of TERMS, e.g. 'offline', 'self', 'offline_self', 'feature_self',
'online_relation'. `get_loss_fn` turns one into
  loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels)
      -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented (and, with mixup, mixed) images in [0, 1],
`targets` the matching [batch, classes] label distributions and `labels` each
example's own integer label before mixing. Only `params` is differentiated; the
teacher's variables are an input, never trained.
"""
import dataclasses
from typing import Callable, FrozenSet, Optional, Sequence, Tuple

import jax
from jax import lax
import jax.numpy as jnp

from kdjax import errors
from kdjax import losses
from kdjax import models

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

  def check(self, config) -> None:
    """Refuses a teacher or peers that the method does not use, or their absence."""
    if self.uses_peers and not config.peers:
      raise errors.ConfigError('peers', '', f'method {config.method!r} trains students '
                               'together; set it to the models that learn alongside '
                               'config.model (e.g. configs/online_kd.py:repvgg_a0).')
    if config.peers and not self.uses_peers:
      raise errors.ConfigError('peers', ','.join(config.peers), f'method {config.method!r} '
                               'trains one student; clear it or add the online term to the '
                               'method.')
    if self.uses_teacher and not config.teacher:
      raise errors.ConfigError('teacher', '', f'method {config.method!r} learns from a '
                               'teacher; set it to a teacher directory (a kdjax workdir or a '
                               'converted PyTorch teacher).')
    if config.teacher and not self.uses_teacher:
      raise errors.ConfigError('teacher', config.teacher, f'method {config.method!r} uses no '
                               'teacher; clear it (--config.teacher=) or pick a method that '
                               'does.')

  def model_spec(self, config, hint_channels: Sequence[int] = ()) -> Tuple[str, dict]:
    """(name, constructor arguments) of the trained model, as model.json saves
    them: config.model, or with peers a cohort of it and them. Every student
    gets config.width and config.stage_sizes, heads with the self term, and
    with the feature term a FitNets regressor of its `hint_channels` width."""
    names = (config.model, *config.peers)
    students = []
    for name, channels in zip(names, tuple(hint_channels) or (0,) * len(names)):
      kwargs = {'width': config.width}
      if self.uses_heads:
        kwargs['heads'] = True
      if config.stage_sizes:
        kwargs['stage_sizes'] = tuple(config.stage_sizes)
      if channels:
        kwargs.update(hint_stage=config.hint_stage, hint_channels=channels)
      students.append((name, kwargs))
    if len(students) == 1:
      return students[0]
    return models.COHORT, {'members': students}

  def eval_sums(self, outputs, labels, mask):
    """Correct top-1 counts (over mask=1 examples) of what the method adds to the
    final classifier: each peer's, and each head's and their ensemble's."""
    sums = {}
    if self.uses_peers:
      for i, peer in enumerate(outputs['peers']):
        sums[f'peer{i + 1}_top1'] = correct_top1(peer['logits'], labels, mask)
    if self.uses_heads:
      head_logits = outputs['head_logits']
      for i, head in enumerate(head_logits):
        sums[f'head{i + 1}_top1'] = correct_top1(head, labels, mask)
      # Be Your Own Teacher's ensemble: the mean softmax of every classifier.
      ensemble = jnp.mean(jnp.stack([jax.nn.softmax(l)
                                     for l in (*head_logits, outputs['logits'])]), 0)
      sums['ensemble_top1'] = correct_top1(ensemble, labels, mask)
    return sums

  def describe_test(self, test) -> str:
    """The method's part of the epoch line: heads and ensemble, peers (top-1 %)."""
    text = ''
    if self.uses_heads:
      heads = sorted(k for k in test if k.startswith('head'))
      text += (f'  heads {"/".join(f"{test[k]:.2f}" for k in heads)}%  ensemble '
               f'{test["ensemble_top1"]:.2f}%')
    if self.uses_peers:
      peers = sorted(k for k in test if k.startswith('peer'))
      text += f'  peers {"/".join(f"{test[k]:.2f}" for k in peers)}%'
    return text


def correct_top1(logits, labels, mask):
  """How many of the mask=1 examples `logits` classify right."""
  return jnp.sum(mask * (jnp.argmax(logits, -1) == labels))


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


# config.kd_reduction: how the offline KL is averaged. 'mean' is torch's
# nn.KLDivLoss() default, the study's: over the batch and the classes, i.e.
# the batch mean divided by the class count; 'batchmean' is the batch mean
# (Hinton's, RepDistiller's and Be Your Own Teacher's soft cross-entropy).
KD_REDUCTIONS = ('mean', 'batchmean')
# config.head_labels: the CE target of the intermediate heads. 'own' is each
# example's own label before mixing (the study's code, which passes its
# unmixed labels to the heads' CE while their inputs are mixed); 'mixed' is the
# mixed distribution the final classifier gets.
HEAD_LABELS = ('own', 'mixed')
# config.self_feature_reduction: how the heads' squared feature distances are
# reduced. 'sum' over the global batch and the features is the study's (and
# Be Your Own Teacher's) feature_loss_function; 'mean' averages over the batch.
FEATURE_REDUCTIONS = ('sum', 'mean')


def check_choice(config, field, choices):
  if config[field] not in choices:
    raise errors.ConfigError(field, config[field], f'set it to one of {list(choices)}.')


def _heads_term(outputs, targets, own_targets, config, global_batch):
  """Be Your Own Teacher on the intermediate heads: each learns from the labels,
  from the final logits (T^2 KL) and from the final feature (squared L2); the
  final outputs are gradient-free targets."""
  w = config.self_kd_weight
  labels = own_targets if config.head_labels == 'own' else targets
  feature_weight = config.self_feature_weight * (
      global_batch if config.self_feature_reduction == 'sum' else 1)
  total = 0.0
  for logits, feature in zip(outputs['head_logits'], outputs['head_features']):
    total += ((1 - w) * losses.soft_cross_entropy(logits, labels)
              + w * losses.kl_divergence(logits, outputs['logits'],
                                         config.self_kd_temperature)
              + feature_weight * losses.feature_l2(feature, outputs['feature']))
  return total


def _label_weight(terms, config):
  # Hinton's (1 - w) when a teacher softens the final classifier's targets; with
  # heads alone, Be Your Own Teacher's reference code also puts its (1 - w) there.
  if 'offline' in terms:
    return 1 - config.kd_weight
  if 'self' in terms:
    return 1 - config.self_kd_weight
  return 1.0


def _student_loss(outputs, peer_logits, targets, own_targets, teacher, config, terms,
                  gather, global_batch):
  """One student's loss. `teacher` holds the teacher's outputs, `peer_logits`
  the other students' logits, `own_targets` the unmixed one-hot labels, `gather`
  collects an array over the global batch of `global_batch` examples."""
  logits = outputs['logits']
  loss = _label_weight(terms, config) * losses.soft_cross_entropy(logits, targets)
  if 'offline' in terms:
    kd = losses.kl_divergence(logits, teacher['logits'], config.kd_temperature)
    if config.kd_reduction == 'mean':
      kd /= logits.shape[-1]
    loss += config.kd_weight * kd
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
    loss += _heads_term(outputs, targets, own_targets, config, global_batch)
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
  check_choice(config, 'kd_reduction', KD_REDUCTIONS)
  check_choice(config, 'head_labels', HEAD_LABELS)
  check_choice(config, 'self_feature_reduction', FEATURE_REDUCTIONS)

  def gather(x):
    return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)

  def loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels):
    outputs, new_batch_stats = student_apply(params, batch_stats, pixels)
    teacher = None
    if method.uses_teacher:
      teacher = jax.lax.stop_gradient(teacher_apply(teacher_variables, pixels))
    own_targets = jax.nn.one_hot(labels, targets.shape[-1], dtype=targets.dtype)
    global_batch = len(labels) * (1 if axis_name is None else lax.axis_size(axis_name))
    # Every student's loss counts; peers' logits are gradient-free targets
    # (kl_divergence stops them), so each student's gradient is its own loss's.
    every = students(outputs)
    all_logits = [s['logits'] for s in every]
    loss = sum(_student_loss(s, all_logits[:i] + all_logits[i + 1:], targets, own_targets,
                             teacher, config, method.terms, gather, global_batch)
               for i, s in enumerate(every))
    # Against each example's own label, as the study's training accuracy.
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
    return loss, (new_batch_stats, {'loss': loss, 'accuracy': accuracy})
  return loss_fn
