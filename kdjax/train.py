"""Training and evaluation: pure per-device steps, the pmap wrapper and the loop."""
import functools
import json
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Sequence, Tuple

from flax import jax_utils
from flax.training import train_state
import jax
from jax import lax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np

from kdjax import checkpoint
from kdjax import data
from kdjax import methods
from kdjax import models
from kdjax import optim
from kdjax import teachers
from kdjax import workdir as workdir_lib

AXIS = 'batch'  # the device axis that pmap (or shard_map) maps the steps over
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class TrainState(train_state.TrainState):
  batch_stats: Any


def _student_kwargs(config, method, hint_channels):
  kwargs = {'width': config.width}
  if method.uses_heads:
    kwargs['heads'] = True
  if config.stage_sizes:
    kwargs['stage_sizes'] = tuple(config.stage_sizes)
  if hint_channels:
    kwargs.update(hint_stage=config.hint_stage, hint_channels=hint_channels)
  return kwargs


def model_spec(config: ml_collections.ConfigDict,
               hint_channels: Sequence[int] = ()) -> Tuple[str, Dict[str, Any]]:
  """(name, constructor arguments) of the trained model, as model.json saves
  them: config.model, or with config.peers a cohort of it and them. Every
  student gets config.width and config.stage_sizes; `hint_channels` gives each
  one's FitNets regressor width (see hint_channels)."""
  method = methods.get_method(config.method)
  names = (config.model, *config.peers)
  hint_channels = tuple(hint_channels) or (0,) * len(names)
  students = [(name, _student_kwargs(config, method, channels))
              for name, channels in zip(names, hint_channels)]
  if len(students) == 1:
    return students[0]
  return models.COHORT, {'members': students}


def create_model(config: ml_collections.ConfigDict, num_classes: int,
                 hint_channels: Sequence[int] = ()):
  if config.dtype not in DTYPES:
    raise ValueError(f'Unknown dtype {config.dtype!r}; set --config.dtype to one '
                     f'of {sorted(DTYPES)}.')
  name, kwargs = model_spec(config, hint_channels)
  return models.get_model(name, num_classes=num_classes, dtype=DTYPES[config.dtype],
                          axis_name=AXIS, **kwargs)


def hint_channels(config, teacher, num_classes, image_shape) -> Tuple[int, ...]:
  """Each student's FitNets regressor width: the channel count of the teacher
  stage that its stage config.hint_stage matches (methods.hint_source)."""
  pixels = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  teacher_stages = jax.eval_shape(
      functools.partial(teacher.model.apply, train=False), teacher.variables,
      pixels)['stage_features']
  shapes = [s.shape for s in teacher_stages]
  plain = create_model(config, num_classes)
  outputs = jax.eval_shape(lambda x: plain.init_with_output(
      jax.random.PRNGKey(0), x, train=False)[0], pixels)
  channels = []
  for name, student in zip((config.model, *config.peers), methods.students(outputs)):
    stages = student['stage_features']
    if not 0 <= config.hint_stage < len(stages):
      raise ValueError(f'config.hint_stage={config.hint_stage}, but {name} has stages '
                       f'0 to {len(stages) - 1}; set --config.hint_stage to one of them.')
    hint_hw = stages[config.hint_stage].shape[1:3]
    channels.append(shapes[methods.hint_source(hint_hw, shapes)][-1])
  return tuple(channels)


def replicate(tree, devices):
  """A copy of `tree` on each device, sharded as pmap's outputs are so that the
  first step's inputs and later ones hit the same compiled executable."""
  return jax_utils.replicate(tree, devices, axis_name=AXIS)


def create_train_state(key, model, tx, image_shape) -> TrainState:
  variables = jax.jit(functools.partial(model.init, train=False))(
      key, jnp.zeros((1, *image_shape), jnp.float32))
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           batch_stats=variables['batch_stats'], tx=tx)


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

  Runs under a map over axis AXIS; `batch` holds uint8 images and int32 labels.
  `rng` is the same on every device; per-step and per-example keys derive from it.
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


def _correct_top1(logits, labels, mask):
  return jnp.sum(mask * (jnp.argmax(logits, -1) == labels))


def eval_step(variables, batch: Dict[str, jax.Array], *, apply: Callable):
  """Sums over the real (mask=1) examples: correct top-1/top-5, loss and count,
  each peer's correct top-1 (a cohort), and with heads, each head's and the
  ensemble's correct top-1."""
  outputs, _ = apply(variables['params'], variables['batch_stats'],
                     data.to_float(batch['image']), train=False)
  logits, labels, mask = outputs['logits'], batch['label'], batch['mask']
  top5 = lax.top_k(logits, min(5, logits.shape[-1]))[1]
  loss = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1)[:, 0]
  sums = {'top1': _correct_top1(logits, labels, mask),
          'top5': jnp.sum(mask * jnp.any(top5 == labels[:, None], -1)),
          'loss': jnp.sum(mask * loss),
          'count': jnp.sum(mask)}
  for i, peer in enumerate(outputs.get('peers', ())):
    sums[f'peer{i + 1}_top1'] = _correct_top1(peer['logits'], labels, mask)
  head_logits = outputs.get('head_logits', ())
  for i, head in enumerate(head_logits):
    sums[f'head{i + 1}_top1'] = _correct_top1(head, labels, mask)
  if head_logits:
    # Be Your Own Teacher's ensemble: the mean softmax of every classifier.
    ensemble = jnp.mean(jnp.stack([jax.nn.softmax(l) for l in (*head_logits, logits)]), 0)
    sums['ensemble_top1'] = _correct_top1(ensemble, labels, mask)
  return lax.psum(sums, AXIS)


def _gather(images, labels, indices):
  return {'image': images[indices], 'label': labels[indices]}


def pmap_train_step(loss_fn: Callable, *, augment: bool, mixup_alpha: float,
                    num_classes: int, rotation_degrees: float = 0.0, devices=None):
  """train_step under jax.pmap; each device gathers its batch by index from
  device-resident (replicated) data, so a step moves only indices to the devices."""
  step = functools.partial(train_step, loss_fn=loss_fn, augment=augment,
                           rotation_degrees=rotation_degrees, mixup_alpha=mixup_alpha,
                           num_classes=num_classes)

  def gathered(state, images, labels, indices, rng, teacher_variables):
    return step(state, _gather(images, labels, indices), rng, teacher_variables)
  return jax.pmap(gathered, axis_name=AXIS, devices=devices, donate_argnums=(0,))


def pmap_eval_step(apply: Callable, devices=None):
  """eval_step under jax.pmap, gathering by index like pmap_train_step."""
  step = functools.partial(eval_step, apply=apply)

  def gathered(variables, images, labels, indices, mask):
    return step(variables, {**_gather(images, labels, indices), 'mask': mask})
  return jax.pmap(gathered, axis_name=AXIS, devices=devices)


def this_process(devices):
  """Positions, among the `devices` a pmap maps over (all processes' devices),
  of those this process feeds: its slice of every global batch."""
  return np.array([i for i, d in enumerate(devices) if d.process_index == jax.process_index()])


def evaluate(p_eval_step, variables, images, labels, num_examples, global_batch,
             devices) -> Dict[str, float]:
  """Top-1/top-5 (%, and each head's top-1) and loss on all `num_examples` for
  replicated `variables`, evaluated by a pmap over `devices` (with several
  processes, each feeds its own devices); the last batch is padded and masked,
  so every example counts exactly once."""
  num_batches = -(-num_examples // global_batch)
  indices = np.zeros(num_batches * global_batch, np.int32)
  indices[:num_examples] = np.arange(num_examples)
  mask = (np.arange(len(indices)) < num_examples).astype(np.float32)
  shape = (num_batches, len(devices), global_batch // len(devices))
  local = this_process(devices)
  sums = [p_eval_step(variables, images, labels, i[local], m[local])
          for i, m in zip(indices.reshape(shape), mask.reshape(shape))]
  totals = jax.tree.map(lambda *x: float(np.sum(x)), *jax.device_get(
      [jax_utils.unreplicate(s) for s in sums]))
  count = totals.pop('count')
  result = {k: (100 if k.endswith(('top1', 'top5')) else 1) * v / count
            for k, v in totals.items()}
  return {**result, 'count': int(count)}


def evaluate_teacher(teacher, images, labels, num_examples, global_batch, devices):
  """(the teacher's variables replicated on this process's `devices`, its test
  metrics) for test data already replicated there; `devices` as for evaluate."""
  variables = replicate(teacher.variables, [devices[i] for i in this_process(devices)])
  apply = make_apply(teacher.model, teacher.mean, teacher.std)
  return variables, evaluate(pmap_eval_step(apply, devices), variables, images, labels,
                             num_examples, global_batch, devices)


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'


def _check_batch_sizes(config, num_devices):
  for field in ('batch_size', 'eval_batch_size'):
    if config[field] % num_devices:
      raise ValueError(
          f'config.{field}={config[field]} does not divide evenly over '
          f'{num_devices} devices; set --config.{field} to a multiple of '
          f'{num_devices}.')


def _read_records(path, up_to_step):
  """metrics.jsonl records up to `up_to_step` (later ones belong to no checkpoint)."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [r for r in records if r['step'] <= up_to_step]


def _write_records(path, records):
  with open(path, 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


def summarize(records, config, teacher_top1=None) -> Dict[str, Any]:
  """Best and final value of every test accuracy (top-1, top-5, heads) over the
  epoch records; the best epoch is the one of the best final-classifier top-1."""
  final = records[-1]
  # Of tied epochs the last, as orbax's best-checkpoint policy keeps it.
  summary = {'best_top1_epoch': max(reversed(records), key=lambda r: r['test_top1'])['epoch']}
  for key in final:
    if key.startswith('test_') and key.endswith(('top1', 'top5')):
      name = key[len('test_'):]
      summary[f'best_{name}'] = max(r[key] for r in records)
      summary[f'final_{name}'] = final[key]
  summary.update({
      'epochs_completed': final['epoch'], 'num_epochs': config.num_epochs,
      'wall_time_s': sum(r['epoch_time_s'] for r in records),
      'config': workdir_lib.config_as_json(config),
  })
  if teacher_top1 is not None:
    summary['teacher_top1'] = teacher_top1
  return summary


def _check_method_config(config, method):
  if method.uses_peers and not config.peers:
    raise ValueError(f'Method {config.method!r} trains students together; set '
                     '--config.peers to the models that learn alongside config.model '
                     '(e.g. configs/online_kd.py:repvgg_a0).')
  if config.peers and not method.uses_peers:
    raise ValueError(f'config.peers is set but method {config.method!r} trains one '
                     'student; clear it or add the online term to the method.')
  if method.uses_teacher and not config.teacher:
    raise ValueError(f'Method {config.method!r} learns from a teacher; set '
                     '--config.teacher to a teacher directory (a kdjax workdir or a '
                     'converted PyTorch teacher).')
  if config.teacher and not method.uses_teacher:
    raise ValueError(f'config.teacher is set but method {config.method!r} uses no '
                     'teacher; clear it (--config.teacher=) or pick a method that '
                     'does.')


class Preempted(Exception):
  """SIGTERM arrived; the current step was checkpointed and training stopped."""


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; no checkpoint of it was saved."""


class _SigtermNotice:
  """Within the `with` block, SIGTERM (a preemption notice) only sets `received`,
  so the loop can save the current step before it exits."""

  def __enter__(self):
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint after this step, then stopping.')
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _check_finite(step_metrics, last_step, steps_per_epoch, manager):
  """Raises NonFiniteLossError, naming the first bad step, if any loss of the
  steps ending at `last_step` is not finite (one host sync per checkpoint)."""
  step_losses = np.asarray(jax.device_get([m['loss'][0] for m in step_metrics]))
  bad = np.flatnonzero(~np.isfinite(step_losses))
  if not len(bad):
    return
  step = last_step - len(step_losses) + 1 + int(bad[0])
  manager.wait_until_finished()
  kept = manager.latest_step()
  raise NonFiniteLossError(
      f'The loss became {step_losses[bad[0]]} at step {step} (epoch '
      f'{(step - 1) // steps_per_epoch + 1}); training stopped without saving it. '
      + (f'The last good checkpoint (step {kept}) is kept. ' if kept is not None else '')
      + 'Lower --config.learning_rate (or raise warmup_epochs, or use float32) in a new '
      '--workdir; rerunning this command would resume from that checkpoint with the '
      'same settings.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       fresh: bool = False) -> Dict[str, Any]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns
  the summary. With `fresh`, an existing run there is first moved to
  <workdir>.previous-<time>. Raises Preempted after saving on SIGTERM."""
  # Every process's devices, in the order the steps map over them; this
  # process feeds the `local` ones its slice of each global batch.
  devices = jax.devices()
  local = this_process(devices)
  local_devices = [devices[i] for i in local]
  num_devices = len(devices)
  _check_batch_sizes(config, num_devices)
  method = methods.get_method(config.method)
  _check_method_config(config, method)
  is_writer = jax.process_index() == 0
  if fresh and is_writer:
    moved = workdir_lib.move_aside(workdir)
    if moved:
      logging.info('Moved the previous run in %s to %s.', workdir, moved)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('kdjax: workdir ready')
  workdir_lib.check_config(config, workdir)
  workdir_lib.check_writable(workdir)
  load_start = time.time()
  dataset = data.load_dataset(config.dataset, config.data_dir, config.manual_dir)
  num_train = len(dataset.train_labels)
  logging.info('Loaded %s: %d train / %d test images in %.1f s.', config.dataset,
               num_train, len(dataset.test_labels), time.time() - load_start)
  steps_per_epoch = num_train // config.batch_size
  if steps_per_epoch == 0:
    raise ValueError(f'config.batch_size={config.batch_size} is larger than the '
                     f'{num_train} training examples of {config.dataset}.')
  total_steps = steps_per_epoch * config.num_epochs
  teacher = None
  if method.uses_teacher:
    teacher = teachers.load(config.teacher, DTYPES[config.dtype], dataset.num_classes,
                            config.dataset)

  image_shape = dataset.train_images.shape[1:]
  channels = (hint_channels(config, teacher, dataset.num_classes, image_shape)
              if method.uses_hint else ())
  model = create_model(config, dataset.num_classes, channels)
  schedule = optim.create_schedule(config, steps_per_epoch)
  tx = optim.create_optimizer(schedule, config.momentum, config.weight_decay)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state = create_train_state(init_key, model, tx, image_shape)

  state = jax.device_get(state)
  # Room for the last keep_checkpoints, the best, and one being written.
  state_bytes = sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))
  workdir_lib.check_free_space(workdir, state_bytes, config.keep_checkpoints + 2)
  manager, state = checkpoint.resume(workdir, config.keep_checkpoints, state)
  start_step = int(state.step)
  metrics_path = os.path.join(workdir, 'metrics.jsonl')
  records = _read_records(metrics_path, start_step)
  if start_step:
    logging.info('Resuming from the checkpoint at step %d (epoch %d).', start_step,
                 start_step // steps_per_epoch)
  if is_writer:
    _write_records(metrics_path, records)
    with open(os.path.join(workdir, workdir_lib.CONFIG_FILE), 'w') as f:
      f.write(config.to_json(indent=2))
    name, kwargs = model_spec(config, channels)
    teachers.write_model_file(workdir, name, dataset.num_classes, kwargs, dataset.mean,
                              dataset.std)
  # Imported here: tensorboardX imports torch whenever torch is installed.
  import tensorboardX  # pylint: disable=g-import-not-at-top
  writer = tensorboardX.SummaryWriter(workdir) if is_writer else None

  apply = make_apply(model, dataset.mean, dataset.std)
  # Each device keeps both splits (CIFAR: 184 MB as uint8) for index gathers.
  train_images, train_labels, test_images, test_labels = replicate((
      dataset.train_images, dataset.train_labels,
      dataset.test_images, dataset.test_labels), local_devices)
  num_test = len(dataset.test_labels)

  teacher_apply, teacher_variables, teacher_top1 = None, {}, None
  if teacher:
    teacher_variables, teacher_test = evaluate_teacher(
        teacher, test_images, test_labels, num_test, config.eval_batch_size, devices)
    teacher_top1 = teacher_test['top1']
    logging.info('Teacher %s: test top-1 %.2f%%.', teacher.description, teacher_top1)
    teacher_apply = make_teacher_apply(teacher)
  loss_fn = methods.get_loss_fn(config, functools.partial(apply, train=True),
                                teacher_apply, AXIS)
  p_train_step = pmap_train_step(loss_fn, augment=config.augment,
                                 rotation_degrees=config.rotation_degrees,
                                 mixup_alpha=config.mixup_alpha,
                                 num_classes=dataset.num_classes, devices=devices)
  p_eval_step = pmap_eval_step(apply, devices)
  state, rng = replicate((state, train_key), local_devices)
  per_device = config.batch_size // num_devices
  logging.info('Training %s (%s) on %s: %d examples, %d steps/epoch x %d epochs, '
               'batch %d over %d devices in %d process(es).', config.model, config.method,
               config.dataset, num_train, steps_per_epoch, config.num_epochs,
               config.batch_size, num_devices, jax.process_count())

  def save_or_stop(step, top1=None):
    """Checkpoints the state after `step` (its losses already checked); after
    SIGTERM, waits for the save and stops."""
    checkpoint.save(manager, jax.device_get(jax_utils.unreplicate(state)), top1)
    if sigterm.received:
      manager.wait_until_finished()
      raise Preempted(f'Stopped by SIGTERM after saving step {step} in {workdir}; '
                      'rerun the same command to resume from it.')

  step = start_step
  with _SigtermNotice() as sigterm:
    while step < total_steps:
      epoch, first = divmod(step, steps_per_epoch)
      order = data.epoch_permutation(config.seed, epoch, num_train)
      order = order[:steps_per_epoch * config.batch_size].astype(np.int32).reshape(
          steps_per_epoch, num_devices, per_device)[:, local]
      epoch_start = time.time()
      step_metrics, unchecked = [], []  # this epoch's; those since the last finite check
      for i in range(first, steps_per_epoch):
        state, metrics = p_train_step(state, train_images, train_labels, order[i], rng,
                                      teacher_variables)
        step_metrics.append(metrics)
        unchecked.append(metrics)
        step += 1
        if config.log_every_steps and step % config.log_every_steps == 0:
          m = jax.device_get(jax_utils.unreplicate(metrics))
          logging.info('step %d/%d  loss %.4f  lr %.5f', step, total_steps,
                       m['loss'], schedule(step - 1))
        # The epoch's last step is saved below, with the epoch's test accuracy.
        if i < steps_per_epoch - 1 and (sigterm.received or (
            config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0)):
          _check_finite(unchecked, step, steps_per_epoch, manager)
          unchecked = []
          save_or_stop(step)
      _check_finite(unchecked, step, steps_per_epoch, manager)
      train = jax.device_get([jax_utils.unreplicate(m) for m in step_metrics])
      train_time = time.time() - epoch_start
      test = evaluate(p_eval_step, {'params': state.params, 'batch_stats': state.batch_stats},
                      test_images, test_labels, num_test, config.eval_batch_size,
                      devices)
      epoch_time = time.time() - epoch_start
      record = {
          'epoch': epoch + 1, 'step': step, 'lr': float(schedule(step - 1)),
          'train_loss': float(np.mean([m['loss'] for m in train])),
          'train_top1': 100 * float(np.mean([m['accuracy'] for m in train])),
          **{f'test_{k}': v for k, v in test.items() if k != 'count'},
          'images_per_sec': len(train) * config.batch_size / train_time,
          'epoch_time_s': epoch_time,
      }
      # The record goes to disk first: a kill between the two leaves a record
      # newer than the checkpoints, which the resumed run drops (_read_records).
      records.append(record)
      if is_writer:
        with open(metrics_path, 'a') as f:
          f.write(json.dumps(record) + '\n')
        for key, value in record.items():
          writer.add_scalar(key, value, step)
        writer.flush()
      eta = (total_steps - step) / steps_per_epoch * epoch_time
      heads = sorted(k for k in test if k.startswith('head'))
      peers = sorted(k for k in test if k.startswith('peer'))
      logging.info(
          'epoch %d/%d  loss %.4f  lr %.5f  train top-1 %.2f%%  test top-1 %.2f%%  '
          'top-5 %.2f%%%s%s  %.0f img/s  epoch %.1fs  ETA %s', epoch + 1, config.num_epochs,
          record['train_loss'], record['lr'], record['train_top1'], record['test_top1'],
          record['test_top5'],
          f'  heads {"/".join(f"{test[k]:.2f}" for k in heads)}%  ensemble '
          f'{test["ensemble_top1"]:.2f}%' if heads else '',
          f'  peers {"/".join(f"{test[k]:.2f}" for k in peers)}%' if peers else '',
          record['images_per_sec'], epoch_time, _format_duration(eta))
      save_or_stop(step, test['top1'])

  manager.wait_until_finished()
  if not records:
    raise RuntimeError(f'{workdir} holds a finished checkpoint but no metrics.jsonl '
                       'records to summarize; use a fresh --workdir.')
  summary = summarize(records, config, teacher_top1)
  if is_writer:
    writer.close()
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump(summary, f, indent=2)
  logging.info('Done: best test top-1 %.2f%% (epoch %d), final %.2f%%.',
               summary['best_top1'], summary['best_top1_epoch'], summary['final_top1'])
  return summary
