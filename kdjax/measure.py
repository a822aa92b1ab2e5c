"""What kdjax.bench measures: one method's mapped train call (compile, latency,
pipelined throughput, eval, memory, FLOPs), the teacher's forward pass as the
step runs it, ResNet18's bare forward + backward, and host-boundness."""
import dataclasses
import functools
import json
import os
import tempfile
from typing import Any, Dict

import jax
import jax.numpy as jnp
import numpy as np

from kdjax import build as build_lib
from kdjax import data
from kdjax import methods
from kdjax import models
from kdjax import steps
from kdjax import study
from kdjax import teachers
from kdjax import timing
from kdjax import train
from kdjax import workdir as workdir_lib

INFO = data.DatasetInfo('random', 100, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)


def info_for(config) -> data.DatasetInfo:
  """The random data a config is timed on: CIFAR-100's shapes, or for an
  ImageNet config its crop and 1,000 classes (resident in device memory and
  cropped there, not streamed: the step alone)."""
  if config.dataset != data.IMAGENET:
    return INFO
  return dataclasses.replace(data.describe(data.IMAGENET, config.image_size), encoded=False)
# The study teacher a method config (configs/<method>.py:<teacher>) is timed with.
METHOD_TEACHER = 'resnet50'


def load_config(method: str):
  """The config of a study row's name (`offline_kd_resnet50`), of a config file
  of configs/ by its name (`dkd`: configs/dkd.py:resnet50; `ps_kd`), or of a
  config spec ('file.py:arg')."""
  rows = {row.name: row.config for row in study.ROWS}
  if method in rows:
    return build_lib.load_config(rows[method])
  method_config = os.path.join('configs', f'{method}.py')
  if os.path.exists(method_config):
    return build_lib.load_config(f'{method_config}:{METHOD_TEACHER}')
  if '.py' not in method:
    own = sorted(f[:-3] for f in os.listdir('configs') if f.endswith('.py') and
                 f[:-3] not in rows and f != '__init__.py')
    raise ValueError(f'Unknown method {method!r}: name a row of the study '
                     f'({", ".join(rows)}), a config of configs/ ({", ".join(own)}) or a '
                     'config file as main.py takes it (e.g. configs/feature_kd.py:resnet50).')
  return build_lib.load_config(method)


def _median_seconds(fn, warmup: int, repeats: int) -> float:
  return timing.median_seconds(fn, warmup, repeats, jax.block_until_ready)


def teacher_forward(config, teacher):
  """The teacher's forward pass as the train step runs it (its BatchNorm mode;
  batch statistics over steps.AXIS, here a leading axis of one device), jitted:
  (variables, pixels [1, batch, ...]) -> outputs."""
  return jax.jit(jax.vmap(build_lib.teacher_apply(config, teacher, info_for(config)),
                          in_axes=(None, 0), axis_name=steps.AXIS))


def teacher_for(config, width: int):
  """The config's teacher: its converted weights if present, else random weights
  of the architecture its directory names, in the form its BatchNorm mode needs
  either way."""
  info = info_for(config)
  if workdir_lib.has_model_file(config.teacher):
    return build_lib.load_teacher(config, info)
  name = teachers.directory_name(config.teacher)
  arch = study.TEACHERS[name].arch if name in study.TEACHERS else name
  # In the layout the config's students get (ImageNet's stem on ImageNet).
  return teachers.random_teacher(
      arch, info.num_classes, build_lib.DTYPES[build_lib.compute_dtype(config.teacher_dtype)],
      seed=1, bn=config.teacher_bn, width=width, **methods.stem_kwargs(config, arch))


@dataclasses.dataclass
class Options:
  batch_size: int = 128  # global, split over the devices
  # as config.dtype for every method; '' = each config's own (the rows': float32,
  # and the baseline is timed in bfloat16 too)
  dtype: str = ''
  steps: int = 10  # timed calls (and eval batches) per method
  warmup_steps: int = 2  # untimed calls first
  width: int = 64  # ResNet18's (and the teachers') width; 64 is the real size
  steps_per_call: int = 0  # train steps per mapped call; 0 = the config's


def bench_method(spec: str, options: Options, devices) -> Dict[str, Any]:
  """Compile time, train latency and pipelined throughput, eval speed, memory
  and FLOPs of one method's mapped call, on random data of its dataset's
  shapes (info_for)."""
  config = load_config(spec)
  config.update(batch_size=options.batch_size, eval_batch_size=options.batch_size,
                width=options.width)
  if options.dtype:
    config.dtype = options.dtype
  if options.steps_per_call:
    config.steps_per_call = options.steps_per_call
  method = build_lib.check_config(config, len(devices))
  teacher = teacher_for(config, options.width) if method.uses_teacher else None
  info = info_for(config)
  # CIFAR-100's 390 steps per epoch; the schedule's values do not change the speed.
  run = build_lib.build(config, info, 390, devices, teacher)
  per_call = run.steps_per_call
  rng = np.random.default_rng(0)
  # Images a step forwards: the batch, and its partners or carried examples.
  images_per_step = options.batch_size * method.groups
  num_images = 2 * images_per_step
  images, labels, state, key, teacher_variables = steps.replicate((
      rng.integers(0, 256, (num_images, *info.image_shape), np.uint8),
      rng.integers(0, info.num_classes, num_images).astype(np.int32),
      run.init_state(jax.random.PRNGKey(0)), jax.random.PRNGKey(0),
      teacher.variables if teacher else {}), devices)
  per_device = options.batch_size // len(devices)
  indices = (np.arange(per_call * images_per_step, dtype=np.int32) % num_images).reshape(
      per_call, len(devices), per_device * method.groups).transpose(1, 0, 2)
  lams = np.full((len(devices), per_call), 0.3, np.float32)

  compile_s, compiled = timing.timed(lambda: run.train_steps.lower(
      state, images, labels, indices, lams, key, teacher_variables).compile())
  cost = compiled.cost_analysis()
  # XLA's cost analysis counts a while loop's body once, not per trip: the
  # call's count is one step's.
  flops = (cost[0] if isinstance(cost, (list, tuple)) else cost).get('flops')

  def call():
    nonlocal state
    state, metrics = compiled(state, images, labels, indices, lams, key, teacher_variables)
    return metrics
  step_s = _median_seconds(call, options.warmup_steps, options.steps) / per_call
  # Throughput as training runs: calls queued without waiting, one wait at the end.
  queued_s, _ = timing.timed(lambda: jax.block_until_ready(
      [call() for _ in range(options.steps)]))
  pipelined_step_s = queued_s / (options.steps * per_call)

  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  eval_indices = indices[:, 0, :per_device]
  mask = np.ones_like(eval_indices, np.float32)
  eval_s = _median_seconds(
      lambda: run.eval_step(variables, images, labels, eval_indices, mask), 1, options.steps)
  result = {
      'dtype': run.dtype, 'steps_per_call': per_call, 'compile_s': compile_s,
      'step_s': step_s, 'pipelined_step_s': pipelined_step_s,
      'images_per_step': images_per_step,
      'train_images_per_s': images_per_step / pipelined_step_s,
      'train_images_per_s_per_device': images_per_step / pipelined_step_s / len(devices),
      'eval_images_per_s': options.batch_size / eval_s,
      # The backend's high-water mark never resets: the largest of the methods so far.
      'peak_memory_bytes_so_far': (devices[0].memory_stats() or {}).get('peak_bytes_in_use'),
      'flops_per_image': flops / (per_device * method.groups) if flops else None,
      'flops_per_s_per_device': flops / pipelined_step_s if flops else None,
      # What the overhead ratios compare (run's "baseline" is the method that
      # distills nothing).
      'distills': bool(method.terms), 'uses_teacher': method.uses_teacher,
      'uses_heads': method.uses_heads,
  }
  if teacher:
    forward = teacher_forward(config, teacher)
    pixels = jax.device_put(jnp.zeros((1, per_device, *info.image_shape)), devices[0])
    variables = jax.device_put(teacher.variables, devices[0])
    result['teacher_forward_s'] = _median_seconds(lambda: forward(variables, pixels),
                                                  1, options.steps)
  return result


def bare_forward_backward_s(options: Options, device, dtype: str) -> float:
  """Seconds of ResNet18's forward + backward alone, computing in `dtype`, on
  one device's share of the batch: no data handling, optimizer or cross-device
  mean."""
  model = models.get_model('resnet18', INFO.num_classes, width=options.width,
                           dtype=build_lib.DTYPES[dtype])
  per_device = options.batch_size // len(jax.local_devices())
  pixels = jax.device_put(jnp.zeros((per_device, *INFO.image_shape)), device)
  targets = jax.device_put(jax.nn.one_hot(jnp.arange(per_device) % INFO.num_classes,
                                          INFO.num_classes), device)
  variables = jax.device_put(jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), pixels[:1]), device)

  @jax.jit
  def grads(params, batch_stats):
    def loss(params):
      outputs, _ = model.apply({'params': params, 'batch_stats': batch_stats}, pixels,
                               train=True, mutable=['batch_stats'])
      return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(outputs['logits']), -1))
    return jax.grad(loss)(params)
  # At least one untimed call: it compiles.
  return _median_seconds(lambda: grads(variables['params'], variables['batch_stats']),
                         max(1, options.warmup_steps), options.steps)


def host_boundness(epochs: int = 3, steps_per_call: int = 0) -> Dict[str, float]:
  """Steps/s of main.py's whole loop (data order, metrics, logging, checkpoints)
  against a bare loop of the same mapped call, with a model small enough that
  host work would show: configs/digits.py at width 4, batch 32 (44 steps an
  epoch), `steps_per_call` steps per call (0: the config's)."""
  config = load_config('configs/digits.py')
  config.update(width=4, batch_size=32, num_epochs=epochs, warmup_epochs=0.0)
  if steps_per_call:
    config.steps_per_call = steps_per_call
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      last_epoch = [json.loads(line) for line in f][-1]
  loop_steps_per_s = last_epoch['images_per_sec'] / config.batch_size

  devices = jax.local_devices()
  dataset = data.load_dataset('digits')
  steps_per_epoch = len(dataset.train_labels) // config.batch_size
  run = build_lib.build(config, dataset.info, steps_per_epoch, devices)
  per_call = run.steps_per_call
  images, labels, state, key = steps.replicate(
      (dataset.train_images, dataset.train_labels, run.init_state(jax.random.PRNGKey(0)),
       jax.random.PRNGKey(0)), devices)
  order = np.arange(steps_per_epoch * config.batch_size, dtype=np.int32).reshape(
      -1, per_call, len(devices), config.batch_size // len(devices)).transpose(0, 2, 1, 3)
  lams = np.ones((len(devices), per_call), np.float32)

  def epoch():
    nonlocal state
    for indices in order:
      state, metrics = run.train_steps(state, images, labels, indices, lams, key, {})
    return metrics
  bare_steps_per_s = steps_per_epoch / _median_seconds(epoch, 1, epochs)
  return {'loop_steps_per_s': loop_steps_per_s, 'bare_steps_per_s': bare_steps_per_s,
          'ratio': loop_steps_per_s / bare_steps_per_s, 'steps_per_call': per_call}


