"""Training methods, each the cross-entropy plus distillation terms.

A method is 'baseline' (cross-entropy only) or terms joined by '_' in the
order of TERMS, e.g. 'offline', 'self', 'offline_self', 'dkd_self',
'online_relation'. Each term lives in the module of its family (response,
feature, relation, online, heads) as a terms.Term; REGISTRY, built from
those modules, is the one list that configs, checks, the benchmark and the
README's table follow. `get_loss_fn` turns a method into
  loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels, step=None)
      -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented (and, with mixup, mixed) images in [0, 1],
`targets` the matching [batch, classes] label distributions, `labels` each
example's own integer label before mixing and `step` the train step (for
weights that ramp with training; absent: every ramp complete) and `examples`
a terms.Examples (for terms that keep something per training example). Only
`params` is differentiated; the teacher's variables are an input, never
trained; a term's learned parts are params[PARTS][term] and its state
batch_stats[PARTS][term].
"""
import dataclasses
from typing import Callable, Dict, FrozenSet, Optional, Sequence, Tuple

import jax
from jax import lax
import jax.numpy as jnp

from kdjax import errors
from kdjax import losses
from kdjax import models
from kdjax.methods import contrastive
from kdjax.methods import feature
from kdjax.methods import feature_parts
from kdjax.methods import heads
from kdjax.methods import online
from kdjax.methods import relation
from kdjax.methods import response
from kdjax.methods.terms import check_choice, Context, Examples, Term

BASELINE = 'baseline'
# The key of params and batch_stats under which terms keep their learned
# parts (Term.part), one entry per term; the rest is the student's.
PARTS = 'method'
REGISTRY: Dict[str, Term] = {term.name: term for family in (
    response, feature, feature_parts, relation, contrastive, online, heads)
    for term in family.TERMS}
TERMS = tuple(REGISTRY)  # the order terms take in a method's name
KD_REDUCTIONS = response.KD_REDUCTIONS
HEAD_LABELS = heads.HEAD_LABELS
FEATURE_REDUCTIONS = heads.FEATURE_REDUCTIONS
hint_source = feature.hint_source
paired_stages = feature.paired_stages


@dataclasses.dataclass(frozen=True)
class Method:
  terms: FrozenSet[str]

  def _parts(self):
    return {REGISTRY[t].student_part for t in self.terms}

  @property
  def uses_teacher(self) -> bool:
    return any(REGISTRY[t].teacher for t in self.terms)

  @property
  def uses_heads(self) -> bool:  # the students carry intermediate heads
    return 'heads' in self._parts()

  @property
  def uses_hint(self) -> bool:  # the students carry a FitNets regressor
    return 'hint' in self._parts()

  @property
  def uses_peers(self) -> bool:  # several students learn together
    return 'peers' in self._parts()

  @property
  def pairs_stages(self) -> bool:  # a term pairs student and teacher stages
    return any(REGISTRY[t].pairs_stages for t in self.terms)

  @property
  def uses_parts(self) -> bool:  # a term trains a module of its own
    return any(REGISTRY[t].part for t in self.terms)

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
    if self.uses_parts and self.uses_peers:
      raise errors.ConfigError('method', config.method, 'the terms that train a module of '
                               'their own (' + ', '.join(sorted(
                                   t for t in self.terms if REGISTRY[t].part)) + ') train '
                               'one student; drop them or the online term.')
    if self.uses_teacher and not config.teacher:
      raise errors.ConfigError('teacher', '', f'method {config.method!r} learns from a '
                               'teacher; set it to a teacher directory (a kdjax workdir or a '
                               'converted PyTorch teacher).')
    if config.logit_standardization and not self.terms & {'offline', 'dkd'}:
      raise errors.ConfigError('logit_standardization', True, f'method {config.method!r} '
                               'has no offline or dkd term, whose logits it standardizes; '
                               'set it to False or add one of them.')
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
    students_ = []
    for name, channels in zip(names, tuple(hint_channels) or (0,) * len(names)):
      kwargs = {'width': config.width}
      if self.uses_heads:
        kwargs['heads'] = True
      if config.stage_sizes:
        kwargs['stage_sizes'] = tuple(config.stage_sizes)
      if channels:
        kwargs.update(hint_stage=config.hint_stage, hint_channels=channels)
      students_.append((name, kwargs))
    if len(students_) == 1:
      return students_[0]
    return models.COHORT, {'members': students_}

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
      head_keys = sorted(k for k in test if k.startswith('head'))
      text += (f'  heads {"/".join(f"{test[k]:.2f}" for k in head_keys)}%  ensemble '
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


def students(outputs):
  """Every student's outputs: the model's own, then its peers' (a cohort's)."""
  return (outputs, *outputs.get('peers', ()))


def ce_weight(terms, config) -> float:
  """The final classifier's cross-entropy weight: config.ce_weight if set, else
  Hinton's (1 - w) when the offline term softens its targets, Be Your Own
  Teacher's (1 - a) with heads (its reference code puts it there too), else 1
  (DKD's, DIST's and the feature and relation terms' references)."""
  if config.ce_weight is not None:
    return config.ce_weight
  if 'offline' in terms:
    return 1 - config.kd_weight
  if 'self' in terms:
    return 1 - config.self_kd_weight
  return 1.0


def split_parts(tree):
  """(the student's part of params or batch_stats, the terms' parts: PARTS's)."""
  student = {k: v for k, v in tree.items() if k != PARTS}
  return student, tree.get(PARTS, {})


def _context(outputs, teacher, targets, own_targets, config, gather, global_batch, epoch,
             axis_name):
  """The Context of each student (the model's, then its peers')."""
  every = students(outputs)
  all_logits = [s['logits'] for s in every]
  return [Context(student, teacher, all_logits[:i] + all_logits[i + 1:], targets,
                  own_targets, config, gather, global_batch, epoch, axis_name)
          for i, student in enumerate(every)]


def init_parts(config, key, outputs, teacher, targets, num_train=0, axis_name=None):
  """{'params': ..., 'batch_stats': ...} of the terms' learned parts (keyed by
  term), initialized from `key` for student `outputs` and `teacher` outputs of
  the run's shapes (their values do not matter) and a training set of
  `num_train` examples."""
  method = get_method(config.method)
  variables = {'params': {}, 'batch_stats': {}}
  ctx, = _context(outputs, teacher, targets, targets, config, lambda x: x, len(targets),
                  None, axis_name)
  num_classes = targets.shape[-1]
  ctx = ctx._replace(examples=Examples(jnp.arange(len(targets)) % max(num_train, 1),
                                       jnp.arange(num_train) % num_classes,
                                       jax.random.PRNGKey(0)))
  for index, name in enumerate(t for t in TERMS if t in method.terms and REGISTRY[t].part):
    term = REGISTRY[name]
    module = term.part(config, ctx)

    def part(*inputs, module=module, name=name, index=index):
      out, initial = module.init_with_output(jax.random.fold_in(key, index), *inputs)
      for collection in variables:
        if initial.get(collection):
          variables[collection][name] = initial[collection]
      return out
    term.loss(ctx._replace(part=part))
  return variables


def get_loss_fn(config, student_apply: Callable, teacher_apply: Optional[Callable] = None,
                axis_name: Optional[str] = None, steps_per_epoch: Optional[int] = None):
  """The loss_fn of `config.method`.

  student_apply(params, batch_stats, pixels) -> (outputs, new_batch_stats) runs
  the student (a cohort.Cohort for online methods) in training mode;
  teacher_apply(variables, pixels) -> outputs runs the frozen teacher (each
  with its own normalization). Under a map over `axis_name`, relation terms
  see the global batch. `steps_per_epoch` turns loss_fn's `step` into the
  epoch that ramped weights (DKD's) follow.
  """
  method = get_method(config.method)
  if method.uses_teacher and teacher_apply is None:
    raise ValueError(f'Method {config.method!r} needs a teacher.')
  check_choice(config, 'kd_reduction', KD_REDUCTIONS)
  check_choice(config, 'head_labels', HEAD_LABELS)
  check_choice(config, 'self_feature_reduction', FEATURE_REDUCTIONS)
  terms = [REGISTRY[t] for t in TERMS if t in method.terms]

  def gather(x):
    return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)

  def loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels, step=None,
              examples=None):
    (params, part_params), (batch_stats, part_state) = map(split_parts, (params, batch_stats))
    outputs, new_batch_stats = student_apply(params, batch_stats, pixels)
    teacher = None
    if method.uses_teacher:
      teacher = jax.lax.stop_gradient(teacher_apply(teacher_variables, pixels))
    epoch = None
    if step is not None:
      if not steps_per_epoch:
        raise ValueError('get_loss_fn needs steps_per_epoch for loss_fn(..., step=).')
      epoch = step // steps_per_epoch + 1
    own_targets = jax.nn.one_hot(labels, targets.shape[-1], dtype=targets.dtype)
    global_batch = len(labels) * (1 if axis_name is None else lax.axis_size(axis_name))
    new_part_state = {}
    loss = 0.0
    if examples is None and any(term.reads_examples for term in terms):
      raise ValueError(f'Method {config.method!r} needs loss_fn(..., examples=).')
    for ctx in _context(outputs, teacher, targets, own_targets, config, gather, global_batch,
                        epoch, axis_name):
      ctx = ctx._replace(examples=examples)
      student_loss = ce_weight(method.terms, config) * losses.soft_cross_entropy(
          ctx.student['logits'], targets)
      for term in terms:
        if term.part:
          ctx = ctx._replace(part=_bound_part(term, ctx, part_params, part_state,
                                              new_part_state))
        student_loss += term.loss(ctx)
      loss += student_loss
    if new_part_state:
      new_batch_stats = {**new_batch_stats, PARTS: new_part_state}
    # Against each example's own label, as the study's training accuracy.
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
    return loss, (new_batch_stats, {'loss': loss, 'accuracy': accuracy})
  return loss_fn


def _bound_part(term, ctx, part_params, part_state, new_part_state):
  """ctx.part of `term`: its module applied with its parameters and state,
  the state's update recorded in `new_part_state`."""
  module = term.part(ctx.config, ctx)
  variables = {'params': part_params[term.name],
               'batch_stats': part_state.get(term.name, {})}

  def part(*inputs):
    out, updates = module.apply(variables, *inputs, mutable=['batch_stats'])
    if updates.get('batch_stats'):
      new_part_state[term.name] = updates['batch_stats']
    return out
  return part
