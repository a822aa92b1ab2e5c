"""A method's loss_fn, and the learned parts its terms train beside the student."""
from typing import Callable, Optional

import jax
from jax import lax
import jax.numpy as jnp

from kdjax import losses
from kdjax.methods import heads
from kdjax.methods import response
from kdjax.methods.registry import ce_weight, get_method, REGISTRY, students, TERMS
from kdjax.methods.terms import check_choice, Context, Examples

# The key of params and batch_stats under which terms keep their learned
# parts (Term.part), one entry per term; the rest is the student's.
PARTS = 'method'


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


def init_parts(config, key, outputs, teacher, targets, num_train=0, axis_name=None,
               teacher_variables=None):
  """{'params': ..., 'batch_stats': ...} of the terms' learned parts (keyed by
  term), initialized from `key` for student `outputs`, `teacher` outputs and
  `teacher_variables` of the run's shapes (their values do not matter) and a
  training set of `num_train` examples."""
  method = get_method(config.method)
  variables = {'params': {}, 'batch_stats': {}}
  ctx, = _context(outputs, teacher, targets, targets, config, lambda x: x, len(targets),
                  None, axis_name)
  num_classes = targets.shape[-1]
  ctx = ctx._replace(examples=Examples(jnp.arange(len(targets)) % max(num_train, 1),
                                       jnp.arange(num_train) % num_classes,
                                       jax.random.PRNGKey(0)),
                     teacher_variables=teacher_variables)
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
  check_choice(config, 'kd_reduction', response.KD_REDUCTIONS)
  check_choice(config, 'head_labels', heads.HEAD_LABELS)
  check_choice(config, 'self_feature_reduction', heads.FEATURE_REDUCTIONS)
  terms = [REGISTRY[t] for t in TERMS if t in method.terms]

  def gather(x):
    return x if axis_name is None else lax.all_gather(x, axis_name, axis=0, tiled=True)

  def forward(params, batch_stats, pixels):
    """(outputs trained on, new batch_stats, outputs of an untrained second
    group or None): a batch of two groups (method.composition) is forwarded
    group by group, each normalized as a batch of its own."""
    if method.groups == 1:
      return (*student_apply(params, batch_stats, pixels), None)
    first, second = jnp.split(pixels, 2)
    outputs, batch_stats = student_apply(params, batch_stats, first)
    if method.composition == 'pairs':  # partners: no gradient
      second_outputs, batch_stats = student_apply(lax.stop_gradient(params), batch_stats,
                                                  second)
      return outputs, batch_stats, second_outputs
    second_outputs, batch_stats = student_apply(params, batch_stats, second)
    # Every per-example output of both groups; the stages' BN priors are per channel.
    joined = {k: (v if k == 'stage_preact_prior' else jax.tree.map(
        lambda a, b: jnp.concatenate([a, b]), v, second_outputs[k]))
              for k, v in outputs.items()}
    return joined, batch_stats, None

  def loss_fn(params, batch_stats, pixels, targets, teacher_variables, labels, step=None,
              examples=None, split=False):
    (params, part_params), (batch_stats, part_state) = map(split_parts, (params, batch_stats))
    outputs, new_batch_stats, second = forward(params, batch_stats, pixels)
    if second is not None:  # the loss is the first group's
      targets, labels = targets[:len(targets) // 2], labels[:len(labels) // 2]
      if examples is not None:
        examples = examples._replace(indices=examples.indices[:len(labels)])
    teacher = None
    if method.uses_teacher:
      # Group by group, as the student: each its own batch (a teacher on batch statistics).
      groups = jnp.split(pixels, method.groups) if method.groups > 1 else [pixels]
      teacher = jax.lax.stop_gradient(jax.tree.map(
          lambda *g: jnp.concatenate(g), *[teacher_apply(teacher_variables, g)
                                           for g in groups]))
    epoch = None
    if step is not None:
      if not steps_per_epoch:
        raise ValueError('get_loss_fn needs steps_per_epoch for loss_fn(..., step=).')
      epoch = step // steps_per_epoch + 1
    own_targets = jax.nn.one_hot(labels, targets.shape[-1], dtype=targets.dtype)
    global_batch = len(labels) * (1 if axis_name is None else lax.axis_size(axis_name))
    new_part_state = {}
    task = distill = 0.0
    if examples is None and any(term.reads_examples for term in terms):
      raise ValueError(f'Method {config.method!r} needs loss_fn(..., examples=).')
    final_ce = ce_weight(method.terms, config)
    for ctx in _context(outputs, teacher, targets, own_targets, config, gather, global_batch,
                        epoch, axis_name):
      ctx = ctx._replace(examples=examples, second=second, step=step, ce_weight=final_ce,
                         teacher_variables=teacher_variables)
      if not method.carries_ce:
        task += final_ce * losses.soft_cross_entropy(ctx.student['logits'], targets)
      for term in terms:
        if term.part:
          ctx = ctx._replace(part=_bound_part(term, ctx, part_params, part_state,
                                              new_part_state))
        distill += term.loss(ctx)
    loss = task + distill
    if new_part_state:
      new_batch_stats = {**new_batch_stats, PARTS: new_part_state}
    # Against each example's own label, as the study's training accuracy.
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
    metrics = {'loss': loss, 'accuracy': accuracy}
    return ((task, distill) if split else loss), (new_batch_stats, metrics)
  return loss_fn


def _bound_part(term, ctx, part_params, part_state, new_part_state):
  """ctx.part of `term`: its module applied with its parameters and state,
  the state's update recorded in `new_part_state`."""
  module = term.part(ctx.config, ctx)
  variables = {'params': part_params.get(term.name, {}),
               'batch_stats': part_state.get(term.name, {})}

  def part(*inputs):
    out, updates = module.apply(variables, *inputs, mutable=['batch_stats'])
    if updates.get('batch_stats'):
      new_part_state[term.name] = updates['batch_stats']
    return out
  return part
