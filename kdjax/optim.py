"""Optimizers: the learning-rate schedule chained with SGD and weight decay,
or DOT's two momentum buffers."""
from typing import Any, Callable, NamedTuple

import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import optax

from kdjax import errors

# config.schedule: how the learning rate moves between min_learning_rate and
# learning_rate.
SCHEDULES = (
    # The study's (its src/utils/cosine_annealing_warmup.py, gaussian37's
    # CosineAnnealingWarmUpRestarts with T_mult=1, stepped once per epoch by
    # Lightning): cycles of restart_epochs epochs, each a linear warm-up over
    # warmup_epochs from min_learning_rate to the cycle's peak, then a cosine
    # back towards min_learning_rate; the peak of cycle c is
    # learning_rate * restart_decay**c. The rate changes lr_updates_per_epoch
    # times an epoch (the study: once) and is constant in between, so a
    # shorter run keeps the study's shape with every length divided alike.
    'restarts',
    # Bag of Tricks: a linear warm-up over warmup_epochs from min_learning_rate
    # to learning_rate, then one cosine to min_learning_rate, stepped every
    # iteration.
    'warmup_cosine',
    # mdistiller's and RepDistiller's CIFAR-100 recipe (mdistiller/engine/
    # utils.py adjust_learning_rate): learning_rate, times decay_rate after
    # each epoch in decay_epochs, constant within an epoch.
    'step',
)


def check_schedule(config) -> None:
  """Refuses a schedule its run cannot follow, before anything is built."""
  if config.schedule not in SCHEDULES:
    raise errors.ConfigError('schedule', config.schedule,
                             f'set it to one of {list(SCHEDULES)}.')
  warmup = config.warmup_epochs
  if config.schedule == 'restarts':
    updates, cycle = config.lr_updates_per_epoch, config.restart_epochs
    if not _whole(cycle * updates):
      raise errors.ConfigError(
          'restart_epochs', cycle, f'schedule=restarts updates the rate {updates} time(s) '
          'an epoch (lr_updates_per_epoch), so a cycle must be a whole number of updates; '
          f'set a multiple of 1/{updates} epoch (the study: 30 epochs, 1 update each).')
    if not _whole(warmup * updates) or not 0 <= warmup < cycle:
      raise errors.ConfigError(
          'warmup_epochs', warmup, f'schedule=restarts warms up for whole updates of the '
          f'rate ({updates} an epoch) at the start of each {cycle}-epoch cycle '
          f'(restart_epochs); set a multiple of 1/{updates} epoch below {cycle} (the '
          'study: 1 of 30).')
  elif config.schedule == 'step':
    epochs = tuple(config.decay_epochs)
    if not epochs or list(epochs) != sorted(set(epochs)) or epochs[0] < 1:
      raise errors.ConfigError('decay_epochs', epochs, 'schedule=step decays after the '
                               'epochs it names; give rising epochs from 1 (mdistiller: '
                               '"(150, 180, 210)").')
    if warmup >= epochs[0]:
      raise errors.ConfigError('warmup_epochs', warmup, f'schedule=step warms up before its '
                               f'first decay (epoch {epochs[0]}); set it below that.')
  elif warmup >= config.num_epochs:
    raise errors.ConfigError(
        'warmup_epochs', warmup, f'leaves no cosine phase in num_epochs={config.num_epochs}; '
        'set it below num_epochs (e.g. 0 for a short smoke test).')


def create_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate of every step (0-based) of `config`'s run."""
  check_schedule(config)
  if config.schedule == 'restarts':
    return _restarts(config, steps_per_epoch)
  if config.schedule == 'step':
    return _step(config, steps_per_epoch)
  return _warmup_cosine(config, steps_per_epoch)


def _whole(x: float) -> bool:
  return abs(x - round(x)) < 1e-6


def _restarts(config, steps_per_epoch):
  updates = config.lr_updates_per_epoch
  cycle, warmup = round(config.restart_epochs * updates), round(config.warmup_epochs * updates)
  num_cycles = -(-config.num_epochs * updates // cycle)
  floor = config.min_learning_rate
  # Counted in updates: the rate of update u holds over its steps.
  by_update = optax.sgdr_schedule([
      {'init_value': floor, 'peak_value': config.learning_rate * config.restart_decay**c,
       'warmup_steps': warmup, 'decay_steps': cycle, 'end_value': floor}
      for c in range(num_cycles)])
  return lambda step: by_update(step * updates // steps_per_epoch)


def _step(config, steps_per_epoch):
  decayed = optax.piecewise_constant_schedule(
      config.learning_rate, {epoch * steps_per_epoch: config.decay_rate
                             for epoch in config.decay_epochs})
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  if not warmup_steps:
    return decayed
  # Tf-KD's WarmUpLR, stepped before each of the first epoch's steps.
  return lambda step: decayed(step) * jnp.minimum((step + 1) / warmup_steps, 1.0)


def _warmup_cosine(config, steps_per_epoch):
  total_steps = steps_per_epoch * config.num_epochs
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  return optax.warmup_cosine_decay_schedule(
      init_value=config.min_learning_rate, peak_value=config.learning_rate,
      warmup_steps=warmup_steps, decay_steps=total_steps,
      end_value=config.min_learning_rate)


def create_optimizer(schedule: optax.Schedule, momentum: float, weight_decay: float,
                     nesterov: bool = False) -> optax.GradientTransformation:
  """torch.optim.SGD(momentum=m, weight_decay=wd, nesterov=n): decay joins the
  gradient before the momentum buffer, and applies to every parameter."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum, nesterov=nesterov))


OPTIMIZERS = ('sgd', 'dot')  # config.optimizer


class DotState(NamedTuple):
  count: jax.Array  # steps taken
  task_momentum: Any  # the task loss's momentum buffers, like params
  distill_momentum: Any  # the distillation loss's


def dot(learning_rate, momentum: float, delta: float,
        weight_decay: float) -> optax.GradientTransformation:
  """DOT, the distillation-oriented trainer (Zhao et al., ICCV 2023;
  mdistiller/engine/dot.py), as an optax transformation whose update takes
  (task_grads, distill_grads) and returns the parameter updates
  -lr (task buffer + distillation buffer).

  The task buffer has momentum - delta and takes the weight decay; the
  distillation buffer momentum + delta and none. A gradient leaf that is None
  (two_gradients: a loss that does not reach the parameter) follows the
  reference for a parameter missing from one loss's list: the other buffer
  then has the plain momentum, and a distillation-only parameter takes the
  weight decay there, except at its first step (the reference's buffer starts
  as that step's bare gradient). `learning_rate` is a number or a schedule of
  the step count.
  """
  schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
  task_momentum, distill_momentum = momentum - delta, momentum + delta

  def init(params):
    zeros = jax.tree.map(jnp.zeros_like, params)
    return DotState(jnp.zeros([], jnp.int32), zeros, zeros)

  def update(grads, state, params):
    task_grads, distill_grads = grads
    first = state.count == 0
    leaves = lambda tree: jax.tree.leaves(tree, is_leaf=lambda x: x is None)
    treedef = jax.tree.structure(params)
    out = []
    for p, gt, gd, bt, bd in zip(leaves(params), leaves(task_grads), leaves(distill_grads),
                                 leaves(state.task_momentum), leaves(state.distill_momentum)):
      both = gt is not None and gd is not None
      step = jnp.zeros_like(p)
      if gt is not None:
        bt = (task_momentum if both else momentum) * bt + gt + weight_decay * p
        step += bt
      if gd is not None:
        decayed = gd if both else gd + jnp.where(first, 0.0, weight_decay) * p
        bd = (distill_momentum if both else momentum) * bd + decayed
        step += bd
      out.append((step, bt, bd))
    steps, task_buffers, distill_buffers = (treedef.unflatten([o[i] for o in out])
                                            for i in range(3))
    lr = schedule(state.count)
    return (jax.tree.map(lambda s: -lr * s, steps),
            DotState(state.count + 1, task_buffers, distill_buffers))

  return optax.GradientTransformation(init, update)


def two_gradients(split_loss_fn: Callable, params):
  """((task grads, distillation grads), aux) of split_loss_fn(params) ->
  ((task loss, distillation loss), aux) from one forward pass, a leaf None
  where its loss does not depend on that parameter (read from the traced
  computation, as PyTorch leaves such a .grad None): what dot's update takes."""
  (task, distill), pullback, aux = jax.vjp(split_loss_fn, params, has_aux=True)
  one, zero = jnp.ones_like(task), jnp.zeros_like(task)
  grads = (pullback((one, zero))[0], pullback((zero, one))[0])
  reach = _reached(lambda p: split_loss_fn(p)[0], params)
  return tuple(jax.tree.map(lambda g, r: g if r else None, g_tree, r_tree)
               for g_tree, r_tree in zip(grads, reach)), aux


def _reached(fn, params):
  """For each output of fn(params), a tree like params: whether that output
  depends on the leaf (conservatively: an equation's outputs depend on all
  its inputs)."""
  closed = jax.make_jaxpr(fn)(params)
  jaxpr = closed.jaxpr
  reach = []
  for out in jaxpr.outvars:
    needed = set() if isinstance(out, jax_core.Literal) else {out}
    for eqn in reversed(jaxpr.eqns):
      if any(v in needed for v in eqn.outvars):
        needed.update(v for v in eqn.invars if not isinstance(v, jax_core.Literal))
    reach.append(jax.tree.unflatten(jax.tree.structure(params),
                                    [v in needed for v in jaxpr.invars]))
  return reach
