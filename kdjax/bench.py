"""Training and evaluation speed of each method, against PyTorch on the same device.

  python -m kdjax.bench                       # the study's rows, batch 128, float32
  python -m kdjax.bench --methods=baseline,self_kd --dtype=bfloat16 --output=bench-h100.json

Each method is a row of the study (kdjax.study.ROWS: `offline_kd_resnet50`) or
any config spec as main.py takes it (`configs/feature_kd.py:resnet50`);
teachers whose converted weights are absent get random weights of their
architecture, which time the same. Data are random images in device memory, so
the numbers are the step's own. Prints a table and writes every figure to
--output (JSON) for comparing runs.
"""
import dataclasses
import functools
import json
import os
import platform
import tempfile
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from kdjax import build as build_lib
from kdjax import data
from kdjax import models
from kdjax import steps
from kdjax import study
from kdjax import teachers
from kdjax import timing
from kdjax import train

# Dense bf16 peak FLOP/s per chip, by a substring of jax's device_kind (first match).
BF16_PEAK_FLOPS = (('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12),
                   ('A100', 312e12), ('TPU v4', 275e12), ('TPU v5 lite', 197e12),
                   ('TPU v5p', 459e12), ('TPU v6 lite', 918e12))
INFO = data.DatasetInfo('random', 100, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)
BASELINE = study.ROWS[0].name  # row 1, timed in both precisions


def load_config(method: str):
  """The config of a study row's name, or of a config spec ('file.py:arg')."""
  rows = {row.name: row.config for row in study.ROWS}
  if method not in rows and '.py' not in method:
    raise ValueError(f'Unknown method {method!r}: name a row of the study '
                     f'({", ".join(rows)}) or a config file as main.py takes it '
                     '(e.g. configs/feature_kd.py:resnet50).')
  return build_lib.load_config(rows.get(method, method))


def bf16_peak_flops(device_kind: str) -> Optional[float]:
  return next((peak for kind, peak in BF16_PEAK_FLOPS if kind in device_kind), None)


def _median_seconds(fn, warmup: int, repeats: int) -> float:
  return timing.median_seconds(fn, warmup, repeats, jax.block_until_ready)


def teacher_forward(config, teacher):
  """The teacher's forward pass as the train step runs it (its BatchNorm mode;
  batch statistics over steps.AXIS, here a leading axis of one device), jitted:
  (variables, pixels [1, batch, ...]) -> outputs."""
  return jax.jit(jax.vmap(build_lib.teacher_apply(config, teacher, INFO), in_axes=(None, 0),
                          axis_name=steps.AXIS))


def _teacher(config, width: int):
  """The config's teacher: its converted weights if present, else random weights
  of the architecture its directory names, in the form its BatchNorm mode needs
  either way."""
  if teachers.is_teacher(config.teacher):
    return build_lib.load_teacher(config, INFO)
  return teachers.random_teacher(
      teachers.directory_name(config.teacher), INFO.num_classes,
      build_lib.DTYPES[build_lib.compute_dtype(config.teacher_dtype)], seed=1,
      bn=config.teacher_bn, width=width)


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
  and FLOPs of one method's mapped call, on CIFAR-100-sized random data."""
  config = load_config(spec)
  config.update(batch_size=options.batch_size, eval_batch_size=options.batch_size,
                width=options.width)
  if options.dtype:
    config.dtype = options.dtype
  if options.steps_per_call:
    config.steps_per_call = options.steps_per_call
  method = build_lib.check_config(config, len(devices))
  teacher = _teacher(config, options.width) if method.uses_teacher else None
  # CIFAR-100's 390 steps per epoch; the schedule's values do not change the speed.
  run = build_lib.build(config, INFO, 390, devices, teacher)
  per_call = run.steps_per_call
  rng = np.random.default_rng(0)
  num_images = 2 * options.batch_size
  images, labels, state, key, teacher_variables = steps.replicate((
      rng.integers(0, 256, (num_images, *INFO.image_shape), np.uint8),
      rng.integers(0, INFO.num_classes, num_images).astype(np.int32),
      run.init_state(jax.random.PRNGKey(0)), jax.random.PRNGKey(0),
      teacher.variables if teacher else {}), devices)
  per_device = options.batch_size // len(devices)
  indices = (np.arange(per_call * options.batch_size, dtype=np.int32) % num_images).reshape(
      per_call, len(devices), per_device).transpose(1, 0, 2)
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
  eval_indices = indices[:, 0]
  mask = np.ones_like(eval_indices, np.float32)
  eval_s = _median_seconds(
      lambda: run.eval_step(variables, images, labels, eval_indices, mask), 1, options.steps)
  result = {
      'dtype': run.dtype, 'steps_per_call': per_call, 'compile_s': compile_s,
      'step_s': step_s, 'pipelined_step_s': pipelined_step_s,
      'train_images_per_s': options.batch_size / pipelined_step_s,
      'train_images_per_s_per_device': options.batch_size / pipelined_step_s / len(devices),
      'eval_images_per_s': options.batch_size / eval_s,
      # The backend's high-water mark never resets: the largest of the methods so far.
      'peak_memory_bytes_so_far': (devices[0].memory_stats() or {}).get('peak_bytes_in_use'),
      'flops_per_image': flops / per_device if flops else None,
      'flops_per_s_per_device': flops / pipelined_step_s if flops else None,
      # What the overhead ratios compare (run's "baseline" is the method that
      # distills nothing).
      'distills': bool(method.terms), 'uses_teacher': method.uses_teacher,
      'uses_heads': method.uses_heads,
  }
  if teacher:
    forward = teacher_forward(config, teacher)
    pixels = jax.device_put(jnp.zeros((1, per_device, *INFO.image_shape)), devices[0])
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


def torch_reference(specs: Sequence[str], options: Options) -> Dict[str, Any]:
  """Each method's PyTorch step time, eager and channels-last, on the same device."""
  try:
    from kdjax import torch_bench  # pylint: disable=g-import-not-at-top  (torch is optional)
  except ImportError:
    return {'skipped': 'PyTorch is not installed (pip install torch); kdjax.bench '
                       'measured kdjax alone.'}
  configs = {spec: load_config(spec) for spec in specs}
  for config in configs.values():
    config.width = options.width
    if options.dtype:
      config.dtype = options.dtype
  return torch_bench.reference_times(configs, options.batch_size, options.warmup_steps,
                                     options.steps)


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
  timed = [(spec, spec, options) for spec in specs]
  if not options.dtype and BASELINE in specs:
    # The rows train in float32, the study's precision; bfloat16 is one flag away.
    timed.append((f'{BASELINE}@bfloat16', BASELINE, dataclasses.replace(options,
                                                                         dtype='bfloat16')))
  for name, spec, spec_options in timed:
    logging.info('Benchmarking %s ...', name)
    result = bench_method(spec, spec_options, devices)
    if peak and result['flops_per_s_per_device']:
      # Model FLOPs utilization: XLA's count of the step's FLOPs at the pipelined rate.
      result['mfu'] = result['flops_per_s_per_device'] / peak
    report['methods'][name] = result
  ratios = {}
  baseline = next((r for r in report['methods'].values() if not r['distills']), None)
  if baseline:
    ratios['step_over_bare_forward_backward'] = baseline['step_s'] / bare_forward_backward_s(
        options, devices[0], baseline['dtype'])
    for spec, result in report['methods'].items():
      if result['uses_teacher'] and not result['uses_heads']:
        ratios[f'{spec}_over_baseline_plus_teacher_forward'] = result['step_s'] / (
            baseline['step_s'] + result['teacher_forward_s'])
      if result['uses_heads'] and not result['uses_teacher']:
        ratios[f'{spec}_over_baseline'] = result['step_s'] / baseline['step_s']
  report['overhead_ratios'] = ratios
  if with_host_boundness:
    logging.info('Measuring host-boundness ...')
    report['host_boundness'] = host_boundness(steps_per_call=options.steps_per_call)
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
  first = next(iter(report['methods'].values()), {})
  lines = [f"{report['device_kind']} x{report['num_devices']}, batch "
           f"{report['options']['batch_size']}, {first.get('dtype')}, "
           f"{first.get('steps_per_call')} steps per call",
           f"{'method':28s} {'compile s':>9s} {'step s':>8s} {'queued s':>8s} "
           f"{'img/s':>8s} {'eval img/s':>10s} {'GFLOP/img':>9s} {'MFU %':>6s} "
           f"{'/torch':>6s} {'/torch CL':>9s}"]
  for spec, r in report['methods'].items():
    fraction = r.get('mfu')
    flops = r['flops_per_image']
    lines.append(
        f"{spec:28s} {r['compile_s']:9.1f} {r['step_s']:8.4f} {r['pipelined_step_s']:8.4f} "
        f"{r['train_images_per_s']:8.0f} "
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
flags.DEFINE_list('methods', [row.name for row in study.ROWS],
                  'Study rows (kdjax.study.ROWS) or config specs (file.py:arg) to time.')
flags.DEFINE_integer('batch_size', Options.batch_size, 'Global batch, split over the devices.')
flags.DEFINE_enum('dtype', Options.dtype, ['', *sorted((*build_lib.DTYPES, build_lib.AUTO))],
                  "Compute dtype of every method, as config.dtype; '' = each config's own "
                  '(the rows: float32; the baseline is then also timed in bfloat16).')
flags.DEFINE_integer('steps', Options.steps, 'Timed calls per method (median reported).')
flags.DEFINE_integer('warmup_steps', Options.warmup_steps, 'Untimed calls first.')
flags.DEFINE_integer('steps_per_call', Options.steps_per_call,
                     'Train steps per mapped call; 0 = the config\'s (auto: 13 on GPUs and '
                     'TPUs, 1 on CPUs).')
flags.DEFINE_integer('width', Options.width, 'Model width; 64 is the real ResNet18.')
flags.DEFINE_bool('torch', True, 'Also time the PyTorch reference (if torch is installed).')
flags.DEFINE_bool('host_boundness', True, 'Also compare the full loop with a bare one.')
flags.DEFINE_string('output', 'bench.json', 'Where to write the JSON results.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  options = Options(FLAGS.batch_size, FLAGS.dtype, FLAGS.steps, FLAGS.warmup_steps,
                    FLAGS.width, FLAGS.steps_per_call)
  report = run(FLAGS.methods, options, FLAGS.torch, FLAGS.host_boundness)
  with open(FLAGS.output, 'w') as f:
    json.dump(report, f, indent=2)
  print(format_table(report))
  print(f'Wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
