"""The pure per-device train and eval steps, and the device mapping that runs them.

Each step runs under a map over the device axis AXIS (jax.pmap here; the steps
use named-axis collectives only, so jax.shard_map could map them too). Each
device gathers its share of the batch by index from data kept on it, so a step
moves only a few hundred int32 indices from the host.
"""
import functools
from typing import Any, Callable, Dict

from flax import jax_utils
from flax.training import train_state
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from kdjax import data
from kdjax import methods

AXIS = 'batch'  # the device axis the steps are mapped over


class TrainState(train_state.TrainState):
  batch_stats: Any


def make_apply(model, mean, std):
  """`apply(params, batch_stats, pixels, train) -> (outputs, batch_stats)` with
  the model's own normalization applied to pixels in [0, 1]."""
  def apply(params, batch_stats, pixels, train):
    variables = {'params': params, 'batch_stats': batch_stats}
    inputs = data.normalize(pixels, mean, std)
    if not train:
      return model.apply(variables, inputs, train=False), batch_stats
    outputs, updates = model.apply(variables, inputs, train=True,
                                   mutable=['batch_stats'])
    return outputs, updates['batch_stats']
  return apply


def make_teacher_apply(teacher):
  """`apply(variables, pixels) -> outputs`: the frozen teacher in eval mode with
  its own normalization, as methods.get_loss_fn takes it."""
  apply = make_apply(teacher.model, teacher.mean, teacher.std)
  return lambda variables, pixels: apply(variables['params'], variables['batch_stats'],
                                         pixels, train=False)[0]


def _reversed_global_batch(tree):
  """This device's share of the global batch reversed: device i gets device
  n-1-i's examples in reverse order, so pairs span devices as on one device."""
  n = lax.axis_size(AXIS)
  swapped = lax.ppermute(tree, AXIS, [(i, n - 1 - i) for i in range(n)])
  return jax.tree.map(lambda x: x[::-1], swapped)


def train_step(state: TrainState, batch: Dict[str, jax.Array], rng: jax.Array,
               teacher_variables, *, loss_fn: Callable, augment: bool,
               rotation_degrees: float, mixup_alpha: float, num_classes: int):
  """One SGD step on this device's share of the global batch.

  `batch` holds uint8 images and int32 labels. `rng` is the same on every
  device; per-step and per-example keys derive from it.
  """
  step_key = jax.random.fold_in(rng, state.step)
  augment_key, mixup_key = jax.random.split(step_key)
  images = batch['image']
  if augment:
    per_device = images.shape[0]
    positions = lax.axis_index(AXIS) * per_device + jnp.arange(per_device)
    images = data.augment(images, data.example_keys(augment_key, positions),
                          rotation_degrees)
  pixels = data.to_float(images)
  targets = jax.nn.one_hot(batch['label'], num_classes)
  if mixup_alpha:
    # Each example is mixed with its mirror in the (already shuffled) global
    # batch, as timm does, rather than with a random partner.
    pixels, targets = data.mixup((pixels, targets), _reversed_global_batch(
        (pixels, targets)), mixup_key, mixup_alpha)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (_, (batch_stats, metrics)), grads = grad_fn(
      state.params, state.batch_stats, pixels, targets, teacher_variables, batch['label'])
  grads = lax.pmean(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, lax.pmean(metrics, AXIS)


def eval_step(variables, batch: Dict[str, jax.Array], *, apply: Callable,
              method: methods.Method):
  """Sums over the real (mask=1) examples: correct top-1/top-5, loss and count,
  and what the method adds (methods.Method.eval_sums)."""
  outputs, _ = apply(variables['params'], variables['batch_stats'],
                     data.to_float(batch['image']), train=False)
  logits, labels, mask = outputs['logits'], batch['label'], batch['mask']
  top5 = lax.top_k(logits, min(5, logits.shape[-1]))[1]
  loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1)[:, 0]
  sums = {'top1': methods.correct_top1(logits, labels, mask),
          'top5': jnp.sum(mask * jnp.any(top5 == labels[:, None], -1)),
          'loss': jnp.sum(mask * loss),
          'count': jnp.sum(mask),
          **method.eval_sums(outputs, labels, mask)}
  return lax.psum(sums, AXIS)


def _gather(images, labels, indices):
  return {'image': images[indices], 'label': labels[indices]}


def pmap_train_step(loss_fn: Callable, *, augment: bool, rotation_degrees: float,
                    mixup_alpha: float, num_classes: int, devices):
  """train_step under jax.pmap over `devices`, gathering each device's batch by
  index from device-resident (replicated) data:
  (state, images, labels, indices, rng, teacher_variables) -> (state, metrics)."""
  step = functools.partial(train_step, loss_fn=loss_fn, augment=augment,
                           rotation_degrees=rotation_degrees, mixup_alpha=mixup_alpha,
                           num_classes=num_classes)

  def gathered(state, images, labels, indices, rng, teacher_variables):
    return step(state, _gather(images, labels, indices), rng, teacher_variables)
  return jax.pmap(gathered, axis_name=AXIS, devices=devices, donate_argnums=(0,))


def pmap_eval_step(apply: Callable, method: methods.Method, devices):
  """eval_step under jax.pmap, gathering by index like pmap_train_step:
  (variables, images, labels, indices, mask) -> sums."""
  step = functools.partial(eval_step, apply=apply, method=method)

  def gathered(variables, images, labels, indices, mask):
    return step(variables, {**_gather(images, labels, indices), 'mask': mask})
  return jax.pmap(gathered, axis_name=AXIS, devices=devices)


def replicate(tree, devices):
  """A copy of `tree` on each device, sharded as pmap's outputs are so that the
  first step's inputs and later ones hit the same compiled executable."""
  return jax_utils.replicate(tree, devices, axis_name=AXIS)


def this_process(devices) -> np.ndarray:
  """Positions, among the `devices` a pmap maps over (all processes' devices),
  of those this process feeds: its slice of every global batch."""
  return np.array([i for i, d in enumerate(devices) if d.process_index == jax.process_index()])
