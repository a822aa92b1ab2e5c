"""Optimizer: the learning-rate schedule chained with SGD and weight decay."""
import optax

# config.schedule: how the learning rate moves between min_learning_rate and
# learning_rate.
SCHEDULES = (
    # The study's (its src/utils/cosine_annealing_warmup.py, gaussian37's
    # CosineAnnealingWarmUpRestarts with T_mult=1, stepped once per epoch by
    # Lightning): cycles of restart_epochs epochs, each a linear warm-up over
    # warmup_epochs from min_learning_rate to the cycle's peak, then a cosine
    # back towards min_learning_rate; the peak of cycle c is
    # learning_rate * restart_decay**c. The rate is constant within an epoch.
    'restarts',
    # Bag of Tricks: a linear warm-up over warmup_epochs from min_learning_rate
    # to learning_rate, then one cosine to min_learning_rate, stepped every
    # iteration.
    'warmup_cosine',
)


def create_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate of every step (0-based) of `config`'s run."""
  if config.schedule == 'restarts':
    return _restarts(config, steps_per_epoch)
  if config.schedule == 'warmup_cosine':
    return _warmup_cosine(config, steps_per_epoch)
  raise ValueError(f'Unknown schedule {config.schedule!r}; set --config.schedule to one '
                   f'of {list(SCHEDULES)}.')


def _restarts(config, steps_per_epoch):
  cycle, warmup = config.restart_epochs, config.warmup_epochs
  if cycle < 1 or warmup != int(warmup) or not 0 <= warmup < cycle:
    raise ValueError(
        f'schedule=restarts needs a whole number of warm-up epochs below the cycle: '
        f'warmup_epochs={warmup}, restart_epochs={cycle}; set --config.warmup_epochs to '
        f'0..{max(cycle - 1, 0)} (the study: 1 of 30).')
  num_cycles = -(-config.num_epochs // cycle)
  floor = config.min_learning_rate
  by_epoch = optax.sgdr_schedule([
      {'init_value': floor, 'peak_value': config.learning_rate * config.restart_decay**c,
       'warmup_steps': int(warmup), 'decay_steps': cycle, 'end_value': floor}
      for c in range(num_cycles)])
  return lambda step: by_epoch(step // steps_per_epoch)


def _warmup_cosine(config, steps_per_epoch):
  total_steps = steps_per_epoch * config.num_epochs
  warmup_steps = int(config.warmup_epochs * steps_per_epoch)
  if warmup_steps >= total_steps:
    raise ValueError(
        f'warmup_epochs={config.warmup_epochs} leaves no cosine phase in '
        f'num_epochs={config.num_epochs}; set --config.warmup_epochs below num_epochs '
        '(e.g. 0 for a short smoke test).')
  return optax.warmup_cosine_decay_schedule(
      init_value=config.min_learning_rate, peak_value=config.learning_rate,
      warmup_steps=warmup_steps, decay_steps=total_steps,
      end_value=config.min_learning_rate)


def create_optimizer(schedule: optax.Schedule, momentum: float,
                     weight_decay: float) -> optax.GradientTransformation:
  """torch.optim.SGD(momentum=m, weight_decay=wd): decay joins the gradient
  before the momentum buffer, and applies to every parameter."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum))
