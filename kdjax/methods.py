"""One loss_fn per training method, composed from kdjax.losses.

A loss_fn has the signature
  loss_fn(params, batch_stats, pixels, labels, rng) -> (loss, (new_batch_stats, metrics))
where `pixels` are augmented images in [0, 1]; only `params` is differentiated.
`student_apply(params, batch_stats, pixels) -> (outputs, new_batch_stats)` runs the
student in training mode with its own normalization.
"""
import jax.numpy as jnp

from kdjax import losses


def _baseline(student_apply):
  def loss_fn(params, batch_stats, pixels, labels, rng):
    del rng  # the baseline is deterministic given the augmented batch
    outputs, new_batch_stats = student_apply(params, batch_stats, pixels)
    loss = losses.cross_entropy(outputs['logits'], labels)
    accuracy = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
    return loss, (new_batch_stats, {'loss': loss, 'accuracy': accuracy})
  return loss_fn


_METHODS = {'baseline': _baseline}


def get_loss_fn(config, student_apply):
  """The loss_fn of `config.method`."""
  if config.method not in _METHODS:
    raise ValueError(f'Unknown method {config.method!r}. Known methods: '
                     f'{sorted(_METHODS)}. Set --config.method to one of them.')
  return _METHODS[config.method](student_apply)
