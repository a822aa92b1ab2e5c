"""Optimizer: the learning-rate schedule chained with SGD and weight decay."""
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
