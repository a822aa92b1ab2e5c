"""The pure per-device train and eval steps, and the device mapping that runs them.

Each step runs under a map over the device axis AXIS (jax.pmap here; the steps
use named-axis collectives only, so jax.shard_map could map them too). Each
device takes its share of the batch from a feed (kdjax.data.feeds): gathered
by index from data kept on it, so a step moves only a few hundred int32
indices from the host, or sent by the host stream. One mapped call runs
several steps in a lax.scan, so the host dispatches once per call.
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
from kdjax import optim

AXIS = 'batch'  # the device axis the steps are mapped over
MIXUP_PARTNERS = ('permutation', 'mirror')  # config.mixup_partner


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


def make_teacher_apply(teacher, bn: str = 'running', normalization=None):
  """`apply(variables, pixels) -> outputs` of the frozen teacher, as
  methods.get_loss_fn takes it. With `bn='running'` its BatchNorm layers use the
  stored statistics (eval mode); with `bn='batch'` the statistics of the batch
  it sees, over every device on AXIS (call it under the device map), as PyTorch
  normalizes in train mode; the stored statistics are never updated. Pixels are
  normalized with the teacher's own mean and std, or `normalization=(mean, std)`."""
  if bn not in ('running', 'batch'):
    raise ValueError(f"bn is 'running' or 'batch', not {bn!r}.")
  model = teacher.model
  if bn == 'batch':
    if getattr(model, 'deploy', False):
      raise ValueError(f"{teacher.description} is fused (no BatchNorm to normalize over the "
                       "batch): load it with teachers.load(..., bn='batch').")
    model = model.clone(axis_name=AXIS)
  apply = make_apply(model, *(normalization or (teacher.mean, teacher.std)))
  # In train mode the new statistics come back too; they are dropped.
  return lambda variables, pixels: apply(variables['params'], variables['batch_stats'],
                                         pixels, train=bn == 'batch')[0]


def _reversed_global_batch(tree):
  """This device's share of the global batch reversed: device i gets device
  n-1-i's examples in reverse order, so pairs span devices as on one device."""
  n = lax.axis_size(AXIS)
  swapped = lax.ppermute(tree, AXIS, [(i, n - 1 - i) for i in range(n)])
  return jax.tree.map(lambda x: x[::-1], swapped)


def _permuted_global_batch(tree, key):
  """This device's share of the global batch in the order of a permutation
  drawn from `key` (the same on every device): example i's partner is example
  perm[i], as torch.randperm pairs them on one device, however many share it."""
  whole = lax.all_gather(tree, AXIS, tiled=True)
  per_device = jax.tree.leaves(tree)[0].shape[0]
  order = jax.random.permutation(key, per_device * lax.axis_size(AXIS))
  mine = lax.dynamic_slice_in_dim(order, lax.axis_index(AXIS) * per_device, per_device)
  return jax.tree.map(lambda x: x[mine], whole)


def global_positions(rows: int, groups: int) -> jax.Array:
  """Each of this device's `rows` rows' position in the step's global batch,
  whatever the device count: its rows are `groups` groups of equal shares
  (order.epoch_order's layout), and row j of group g on device d sits at
  g x (the global group) + d x share + j."""
  share = rows // groups
  device, devices = lax.axis_index(AXIS), lax.axis_size(AXIS)
  return jnp.concatenate([g * share * devices + device * share + jnp.arange(share)
                          for g in range(groups)])


def train_step(state: TrainState, batch: Dict[str, jax.Array], rng: jax.Array,
               lam: jax.Array, teacher_variables, *, loss_fn: Callable, augment: bool,
               rotation_degrees: float, mixup: bool, mixup_partner: str, num_classes: int,
               train_labels: jax.Array, groups: int = 1, crop: bool = True,
               strong_view: bool = False, two_gradients: bool = False):
  """One SGD step on this device's share of the global batch.

  `batch` holds uint8 images, int32 labels and each example's index in the
  training set, whose labels are `train_labels`, in `groups` groups
  (order.epoch_order's rows). With `augment`, the study's crop and flip
  (unless `crop` is False: the host cropped and flipped) and rotation; with
  `strong_view`, the second group also gets MLKD's strong augmentation
  (data.strong_augment). `rng` is the same on every device; per-step and
  per-example keys derive from it. `lam` is the step's mixup weight
  (data.mixup_lambdas), used if `mixup`, with each example's partner chosen by
  `mixup_partner` (MIXUP_PARTNERS). With `two_gradients`, the state's
  optimizer (optim.dot) takes the task and the distillation gradients apart.
  """
  step_key = jax.random.fold_in(rng, state.step)
  augment_key, partner_key = jax.random.split(step_key)
  images = batch['image']
  positions = global_positions(images.shape[0], groups)
  if augment and (crop or rotation_degrees):
    images = data.augment(images, data.example_keys(augment_key, positions),
                          rotation_degrees, crop)
  if strong_view:
    first, second = jnp.split(images, 2)
    strong_keys = data.example_keys(jax.random.fold_in(step_key, 3), positions)
    images = jnp.concatenate([first, data.strong_augment(second, strong_keys[len(first):])])
  pixels = data.to_float(images)
  targets = jax.nn.one_hot(batch['label'], num_classes)
  if mixup:
    pair = (pixels, targets)
    partner = (_permuted_global_batch(pair, partner_key) if mixup_partner == 'permutation'
               else _reversed_global_batch(pair))  # the mirror, as timm pairs them
    pixels, targets = data.mixup(pair, partner, lam)
  loss_of = functools.partial(
      loss_fn, batch_stats=state.batch_stats, pixels=pixels, targets=targets,
      teacher_variables=teacher_variables, labels=batch['label'], step=state.step,
      examples=methods.Examples(batch['index'], train_labels, jax.random.fold_in(step_key, 2)))
  if two_gradients:
    grads, (batch_stats, metrics) = optim.two_gradients(
        lambda params: loss_of(params, split=True), state.params)
  else:
    grads, (batch_stats, metrics) = jax.grad(loss_of, has_aux=True)(state.params)
  grads = lax.pmean(grads, AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, lax.pmean(metrics, AXIS)


def _batch(images, labels, rows):
  """A batch of the rows a feed names (kdjax.data.feeds): their indices, whose
  images are gathered from the device-resident `images`, or {'index',
  'image'} with the images the host stream sent; labels come from `labels`."""
  index, image = (rows['index'], rows['image']) if isinstance(rows, dict) else (
      rows, images[rows])
  return {'image': image, 'label': labels[index], 'index': index}


def train_steps(state: TrainState, images, labels, batches, lams, rng, teacher_variables,
                **step_kwargs):
  """The train steps of one call in a lax.scan: step i takes this device's
  batch i of `batches` (a feed's: indices [steps, rows] into the resident
  `images` and `labels`, or {'index', 'image'} from the stream, `images` then
  None) and mixes with lams[i]. Returns the state and each step's metrics
  ([steps] arrays)."""
  def body(state, step_inputs):
    rows, lam = step_inputs
    return train_step(state, _batch(images, labels, rows), rng, lam, teacher_variables,
                      train_labels=labels, **step_kwargs)
  if len(lams) == 1:
    # No loop for one step: XLA:CPU runs a step's gradient about 4x slower
    # inside one (117 against 29 ms measured), and one step needs none.
    state, metrics = body(state, jax.tree.map(lambda x: x[0], (batches, lams)))
    return state, jax.tree.map(lambda x: x[None], metrics)
  return lax.scan(body, state, (batches, lams))


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


def pmap_train_steps(loss_fn: Callable, *, augment: bool, rotation_degrees: float,
                     mixup: bool, mixup_partner: str, num_classes: int, devices,
                     groups: int = 1, crop: bool = True, strong_view: bool = False,
                     two_gradients: bool = False):
  """train_steps under jax.pmap over `devices`: (state, images, labels,
  batches [devices, steps, ...], lams [devices, steps], rng,
  teacher_variables) -> (state, metrics [devices, steps]), each device's rows
  `groups` groups (order.epoch_order's). The state is donated."""
  return jax.pmap(functools.partial(
      train_steps, loss_fn=loss_fn, augment=augment, rotation_degrees=rotation_degrees,
      mixup=mixup, mixup_partner=mixup_partner, num_classes=num_classes, groups=groups,
      crop=crop, strong_view=strong_view, two_gradients=two_gradients), axis_name=AXIS,
      devices=devices, donate_argnums=(0,))


def pmap_eval_step(apply: Callable, method: methods.Method, devices):
  """eval_step under jax.pmap, its batch a feed's like the train steps':
  (variables, images, labels, rows, mask) -> sums."""
  step = functools.partial(eval_step, apply=apply, method=method)

  def gathered(variables, images, labels, rows, mask):
    return step(variables, {**_batch(images, labels, rows), 'mask': mask})
  return jax.pmap(gathered, axis_name=AXIS, devices=devices)


def replicate(tree, devices):
  """A copy of `tree` on each device, sharded as pmap's outputs are so that the
  first step's inputs and later ones hit the same compiled executable."""
  return jax_utils.replicate(tree, devices, axis_name=AXIS)


def fetch_first(tree):
  """This process's first device's copy of every leaf of a mapped output (the
  copies are equal), on the host: one transfer, nothing dispatched."""
  return jax.tree.map(lambda x: x[0],
                      jax.device_get(jax.tree.map(lambda x: x.addressable_data(0), tree)))


def this_process(devices) -> np.ndarray:
  """Positions, among the `devices` a pmap maps over (all processes' devices),
  of those this process feeds: its slice of every global batch."""
  return np.array([i for i, d in enumerate(devices) if d.process_index == jax.process_index()])
