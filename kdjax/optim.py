"""Optimizer: linear warm-up + cosine schedule chained with SGD and weight decay."""
import optax


def create_schedule(learning_rate: float, steps_per_epoch: int, num_epochs: int,
                    warmup_epochs: float) -> optax.Schedule:
  """Linear warm-up from 0 to `learning_rate`, then cosine to 0, per iteration."""
  total_steps = steps_per_epoch * num_epochs
  warmup_steps = int(warmup_epochs * steps_per_epoch)
  if warmup_steps >= total_steps:
    raise ValueError(
        f'warmup_epochs={warmup_epochs} leaves no cosine phase in num_epochs={num_epochs}; '
        'set --config.warmup_epochs below num_epochs (e.g. 0 for a short smoke test).')
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=total_steps, end_value=0.0)


def create_optimizer(schedule: optax.Schedule, momentum: float,
                     weight_decay: float) -> optax.GradientTransformation:
  """torch.optim.SGD(momentum=m, weight_decay=wd): decay joins the gradient
  before the momentum buffer, and applies to every parameter."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(schedule, momentum=momentum))
