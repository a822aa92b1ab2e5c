"""Training and evaluation speed of each method, against PyTorch on the same device.

  python -m kdjax.bench                       # the study's six rows, batch 128, float32
  python -m kdjax.bench --dtype=bfloat16 --output=bench-h100.json

Each method is a config file with its argument, as main.py takes it
(`offline_kd:resnet50`); teachers whose converted weights are absent get random
weights of their architecture, which time the same. Data are random images in
device memory, so the numbers are the step's own. Prints a table and writes
every figure to --output (JSON) for comparing runs.
"""
import dataclasses
import functools
import importlib
import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import data
from kdjax import methods
from kdjax import models
from kdjax import optim
from kdjax import teachers
from kdjax import train

METHODS = ('baseline', 'offline_kd:repvgg_a0', 'offline_kd:resnet50', 'self_kd',
           'offline_self_kd:repvgg_a0', 'offline_self_kd:resnet50')
# Dense bf16 peak FLOP/s per chip, by a substring of jax's device_kind (first match).
BF16_PEAK_FLOPS = (('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12),
                   ('A100', 312e12), ('TPU v4', 275e12), ('TPU v5 lite', 197e12),
                   ('TPU v5p', 459e12), ('TPU v6 lite', 918e12))
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 100


def load_config(spec: str):
  """'offline_kd:resnet50' -> configs/offline_kd.py's get_config('resnet50')."""
  name, _, arg = spec.partition(':')
  try:
    module = importlib.import_module(f'configs.{name}')
  except ModuleNotFoundError as e:
    raise ValueError(f'No config file configs/{name}.py for method {spec!r}; name one of '
                     'configs/*.py, with its argument after ":" (e.g. offline_kd:resnet50). '
                     'Run from the repository root.') from e
  return module.get_config(arg or None)


def bf16_peak_flops(device_kind: str) -> Optional[float]:
  return next((peak for kind, peak in BF16_PEAK_FLOPS if kind in device_kind), None)


def _median_seconds(fn, warmup: int, repeats: int) -> float:
  """Median wall time of `repeats` calls of fn (each waited for) after `warmup`."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def _teacher(config, width: int):
  """The config's teacher: its converted weights if present, else random weights
  of the architecture its directory names, in inference form either way."""
  if teachers.is_teacher(config.teacher):
    return teachers.load(config.teacher, train.DTYPES[config.dtype], NUM_CLASSES)
  name = teachers.directory_name(config.teacher)
  model = models.get_model(name, NUM_CLASSES, width=width)
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(1), jnp.zeros((1, *IMAGE_SHAPE)))
  kwargs, variables = models.inference_form(name, {'width': width}, variables)
  return teachers.Teacher(
      models.get_model(name, NUM_CLASSES, dtype=train.DTYPES[config.dtype], **kwargs),
      variables, mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=NUM_CLASSES,
      description=f'random {name}')


@dataclasses.dataclass
class Options:
  batch_size: int = 128  # global, split over the devices
  dtype: str = 'float32'
  steps: int = 10  # timed steps (and eval batches) per method
  warmup_steps: int = 2
  width: int = 64  # ResNet18's (and the teachers') width; 64 is the real size


def _train_step(config, num_classes, image_shape, mean, std, devices, teacher=None,
                hint_channels=()):
  """(initial state, apply, pmapped train step) of `config`, built as
  train_and_evaluate builds them; the schedule's values do not change the speed."""
  model = train.create_model(config, num_classes, hint_channels)
  tx = optim.create_optimizer(optim.create_schedule(config, 100), config.momentum,
                              config.weight_decay)
  state = train.create_train_state(jax.random.PRNGKey(0), model, tx, image_shape)
  apply = train.make_apply(model, mean, std)
  teacher_apply = train.make_teacher_apply(teacher) if teacher else None
  loss_fn = methods.get_loss_fn(config, functools.partial(apply, train=True),
                                teacher_apply, train.AXIS)
  return state, apply, train.pmap_train_step(
      loss_fn, augment=config.augment, rotation_degrees=config.rotation_degrees,
      mixup_alpha=config.mixup_alpha, num_classes=num_classes, devices=devices)


def bench_method(spec: str, options: Options, devices) -> Dict[str, Any]:
  """Compile time, train and eval speed, memory and FLOPs of one method's step."""
  config = load_config(spec)
  config.update(batch_size=options.batch_size, eval_batch_size=options.batch_size,
                dtype=options.dtype, width=options.width)
  method = methods.get_method(config.method)
  teacher = _teacher(config, options.width) if method.uses_teacher else None
  channels = (train.hint_channels(config, teacher, NUM_CLASSES, IMAGE_SHAPE)
              if method.uses_hint else ())
  state, apply, p_train_step = _train_step(config, NUM_CLASSES, IMAGE_SHAPE, (0.5,) * 3,
                                           (0.25,) * 3, devices, teacher, channels)
  rng = np.random.default_rng(0)
  num_images = 2 * options.batch_size
  images, labels, state, key, teacher_variables = train.replicate((
      rng.integers(0, 256, (num_images, *IMAGE_SHAPE), np.uint8),
      rng.integers(0, NUM_CLASSES, num_images).astype(np.int32), state,
      jax.random.PRNGKey(0), teacher.variables if teacher else {}), devices)
  per_device = options.batch_size // len(devices)
  indices = np.arange(options.batch_size, dtype=np.int32).reshape(len(devices), per_device)

  start = time.perf_counter()
  compiled = p_train_step.lower(state, images, labels, indices, key,
                                teacher_variables).compile()
  compile_s = time.perf_counter() - start
  cost = compiled.cost_analysis()
  flops = (cost[0] if isinstance(cost, (list, tuple)) else cost).get('flops')

  def run_step():
    nonlocal state
    state, metrics = compiled(state, images, labels, indices, key, teacher_variables)
    return metrics
  step_s = _median_seconds(run_step, options.warmup_steps, options.steps)

  p_eval_step = train.pmap_eval_step(apply, devices)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  mask = np.ones_like(indices, np.float32)
  eval_s = _median_seconds(lambda: p_eval_step(variables, images, labels, indices, mask),
                           1, options.steps)
  result = {
      'compile_s': compile_s, 'step_s': step_s,
      'train_images_per_s': options.batch_size / step_s,
      'train_images_per_s_per_device': options.batch_size / step_s / len(devices),
      'eval_images_per_s': options.batch_size / eval_s,
      # The backend's high-water mark never resets: the largest of the methods so far.
      'peak_memory_bytes_so_far': (devices[0].memory_stats() or {}).get('peak_bytes_in_use'),
      'flops_per_image': flops / per_device if flops else None,
      'flops_per_s_per_device': flops / step_s if flops else None,
  }
  if teacher:
    forward = jax.jit(train.make_teacher_apply(teacher))
    pixels = jax.device_put(jnp.zeros((per_device, *IMAGE_SHAPE)), devices[0])
    variables = jax.device_put(teacher.variables, devices[0])
    result['teacher_forward_s'] = _median_seconds(lambda: forward(variables, pixels),
                                                  1, options.steps)
  return result


def bare_forward_backward_s(options: Options, device) -> float:
  """Seconds of ResNet18's forward + backward alone on one device's share of the
  batch: no data handling, optimizer or cross-device mean."""
  model = models.get_model('resnet18', NUM_CLASSES, width=options.width,
                           dtype=train.DTYPES[options.dtype])
  per_device = options.batch_size // len(jax.local_devices())
  pixels = jax.device_put(jnp.zeros((per_device, *IMAGE_SHAPE)), device)
  targets = jax.device_put(jax.nn.one_hot(jnp.arange(per_device) % NUM_CLASSES,
                                          NUM_CLASSES), device)
  variables = jax.device_put(jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), pixels[:1]), device)

  @jax.jit
  def grads(params, batch_stats):
    def loss(params):
      outputs, _ = model.apply({'params': params, 'batch_stats': batch_stats}, pixels,
                               train=True, mutable=['batch_stats'])
      return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(outputs['logits']), -1))
    return jax.grad(loss)(params)
  return _median_seconds(lambda: grads(variables['params'], variables['batch_stats']),
                         options.warmup_steps, options.steps)


def host_boundness(epochs: int = 3) -> Dict[str, float]:
  """Steps/s of main.py's whole loop (data order, metrics, logging, checkpoints)
  against a bare loop calling the same jitted step, with a model small enough
  that host work would show: configs/digits.py at width 4, batch 32."""
  config = load_config('digits')
  config.update(width=4, batch_size=32, num_epochs=epochs, warmup_epochs=0.0)
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      last_epoch = [json.loads(line) for line in f][-1]
  loop_steps_per_s = last_epoch['images_per_sec'] / config.batch_size

  devices = jax.local_devices()
  dataset = data.load_dataset('digits')
  state, _, p_train_step = _train_step(config, dataset.num_classes,
                                       dataset.train_images.shape[1:], dataset.mean,
                                       dataset.std, devices)
  images, labels, state, key = train.replicate(
      (dataset.train_images, dataset.train_labels, state, jax.random.PRNGKey(0)), devices)
  steps = len(dataset.train_labels) // config.batch_size
  order = np.arange(steps * config.batch_size, dtype=np.int32).reshape(
      steps, len(devices), -1)

  def epoch():
    nonlocal state
    for indices in order:
      state, metrics = p_train_step(state, images, labels, indices, key, {})
    return metrics
  bare_steps_per_s = steps / _median_seconds(epoch, 1, epochs)
  return {'loop_steps_per_s': loop_steps_per_s, 'bare_steps_per_s': bare_steps_per_s,
          'ratio': loop_steps_per_s / bare_steps_per_s}


def torch_reference(specs: Sequence[str], options: Options) -> Dict[str, Any]:
  """Each method's PyTorch step time, eager and channels-last, on the same device."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from kdjax import torch_bench  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {'skipped': 'PyTorch is not installed (pip install torch); kdjax.bench '
                       'measured kdjax alone.'}
  device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  result = {'torch_version': torch.__version__, 'device': str(device),
            'threads': torch.get_num_threads()}
  for spec in specs:
    config = load_config(spec)
    config.width = options.width
    terms = methods.get_method(config.method).terms
    teacher = teachers.directory_name(config.teacher) if config.teacher else None
    for layout, channels_last in (('eager', False), ('channels_last', True)):
      step, _ = torch_bench.make_step(config, terms, teacher, options.batch_size, device,
                                      channels_last, options.dtype)
      result[f'{spec}/{layout}_step_s'] = torch_bench.time_step(
          step, device, options.warmup_steps, options.steps)
  return result


def run(specs: Sequence[str], options: Options, with_torch: bool = True,
        with_host_boundness: bool = True) -> Dict[str, Any]:
  """Every figure of the benchmark, as written to its JSON file."""
  devices = jax.local_devices()
  if options.batch_size % len(devices):
    raise ValueError(f'--batch_size={options.batch_size} does not divide over '
                     f'{len(devices)} devices; pass a multiple of {len(devices)}.')
  kind = devices[0].device_kind
  peak = bf16_peak_flops(kind)
  report = {
      'device_kind': kind, 'platform': devices[0].platform, 'num_devices': len(devices),
      'host': platform.processor() or platform.machine(), 'cpu_count': os.cpu_count(),
      'jax_version': jax.__version__, 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'options': dataclasses.asdict(options), 'bf16_peak_flops_per_device': peak,
      'methods': {},
  }
  for spec in specs:
    logging.info('Benchmarking %s ...', spec)
    result = bench_method(spec, options, devices)
    if peak and result['flops_per_s_per_device']:
      result['fraction_of_bf16_peak'] = result['flops_per_s_per_device'] / peak
    report['methods'][spec] = result
  times = {spec: r['step_s'] for spec, r in report['methods'].items()}
  ratios = {}
  if 'baseline' in times:
    ratios['step_over_bare_forward_backward'] = times['baseline'] / bare_forward_backward_s(
        options, devices[0])
    for spec, result in report['methods'].items():
      config = load_config(spec)
      if config.method == 'offline':
        ratios[f'{spec}_over_baseline_plus_teacher_forward'] = result['step_s'] / (
            times['baseline'] + result['teacher_forward_s'])
      if config.method == 'self':
        ratios[f'{spec}_over_baseline'] = result['step_s'] / times['baseline']
  report['overhead_ratios'] = ratios
  if with_host_boundness:
    logging.info('Measuring host-boundness ...')
    report['host_boundness'] = host_boundness()
  if with_torch:
    logging.info('Measuring the PyTorch reference ...')
    add_torch_reference(report, torch_reference(specs, options))
  return report


def add_torch_reference(report: Dict[str, Any], reference: Dict[str, Any]) -> None:
  """Adds torch_reference's figures to `report`, and each method's time ratios."""
  report['torch'] = reference
  for spec, result in report['methods'].items():
    for layout in ('eager', 'channels_last'):
      step_s = reference.get(f'{spec}/{layout}_step_s')
      if step_s:
        result[f'time_over_torch_{layout}'] = result['step_s'] / step_s


def format_table(report: Dict[str, Any]) -> str:
  """One line per method, then the overhead and host-boundness ratios."""
  def number(value, fmt):
    return format(value, fmt) if value is not None else '-'
  lines = [f"{report['device_kind']} x{report['num_devices']}, batch "
           f"{report['options']['batch_size']}, {report['options']['dtype']}",
           f"{'method':28s} {'compile s':>9s} {'step s':>8s} {'img/s':>8s} "
           f"{'eval img/s':>10s} {'GFLOP/img':>9s} {'peak %':>6s} {'/torch':>6s} "
           f"{'/torch CL':>9s}"]
  for spec, r in report['methods'].items():
    fraction = r.get('fraction_of_bf16_peak')
    flops = r['flops_per_image']
    lines.append(
        f"{spec:28s} {r['compile_s']:9.1f} {r['step_s']:8.3f} {r['train_images_per_s']:8.0f} "
        f"{r['eval_images_per_s']:10.0f} {number(flops and flops / 1e9, '9.2f'):>9s} "
        f"{number(fraction and 100 * fraction, '6.1f'):>6s} "
        f"{number(r.get('time_over_torch_eager'), '6.2f'):>6s} "
        f"{number(r.get('time_over_torch_channels_last'), '9.2f'):>9s}")
  for name, value in report['overhead_ratios'].items():
    lines.append(f'{name}: {value:.3f}')
  if 'host_boundness' in report:
    lines.append(f"host-boundness (full loop / bare loop steps/s): "
                 f"{report['host_boundness']['ratio']:.3f}")
  if 'skipped' in report.get('torch', {}):
    lines.append(report['torch']['skipped'])
  return '\n'.join(lines)


FLAGS = flags.FLAGS
flags.DEFINE_list('methods', list(METHODS), 'Config files (with ":argument") to time.')
flags.DEFINE_integer('batch_size', Options.batch_size, 'Global batch, split over the devices.')
flags.DEFINE_enum('dtype', Options.dtype, sorted(train.DTYPES), 'Compute dtype.')
flags.DEFINE_integer('steps', Options.steps, 'Timed steps per method (median reported).')
flags.DEFINE_integer('warmup_steps', Options.warmup_steps, 'Untimed steps first.')
flags.DEFINE_integer('width', Options.width, 'Model width; 64 is the real ResNet18.')
flags.DEFINE_bool('torch', True, 'Also time the PyTorch reference (if torch is installed).')
flags.DEFINE_bool('host_boundness', True, 'Also compare the full loop with a bare one.')
flags.DEFINE_string('output', 'bench.json', 'Where to write the JSON results.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  options = Options(FLAGS.batch_size, FLAGS.dtype, FLAGS.steps, FLAGS.warmup_steps,
                    FLAGS.width)
  report = run(FLAGS.methods, options, FLAGS.torch, FLAGS.host_boundness)
  with open(FLAGS.output, 'w') as f:
    json.dump(report, f, indent=2)
  print(format_table(report))
  print(f'Wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
