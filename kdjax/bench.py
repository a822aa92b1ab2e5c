"""Training and evaluation speed of each method, against PyTorch on the same device.

  python -m kdjax.bench                       # the study's rows, batch 128, float32
  python -m kdjax.bench --methods=baseline,self_kd --dtype=bfloat16 --output=bench-h100.json

Each method is a row of the study (kdjax.study.ROWS: `offline_kd_resnet50`), a
method with a config of its own (`dkd`, `dist`, `at`, `sp`, `pkt`, `nst`:
configs/<method>.py with the study's ResNet50 teacher) or any config spec as
main.py takes it (`configs/feature_kd.py:resnet50`); teachers whose converted
weights are absent get random weights of their architecture, which time the
same. Data are random images in device memory, so the numbers are the step's
own (kdjax.measure takes them). Prints a table and writes every figure to
--output (JSON) for comparing runs.
"""
import dataclasses
import json
import os
import platform
from typing import Any, Dict, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax

from kdjax import build as build_lib
from kdjax import input_bench
from kdjax import measure
from kdjax import study

# Dense bf16 peak FLOP/s per chip, by a substring of jax's device_kind (first match).
BF16_PEAK_FLOPS = (('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12),
                   ('A100', 312e12), ('TPU v4', 275e12), ('TPU v5 lite', 197e12),
                   ('TPU v5p', 459e12), ('TPU v6 lite', 918e12))
BASELINE = study.ROWS[0].name  # row 1, timed in both precisions


def bf16_peak_flops(device_kind: str) -> Optional[float]:
  return next((peak for kind, peak in BF16_PEAK_FLOPS if kind in device_kind), None)


def torch_reference(specs: Sequence[str], options: measure.Options) -> Dict[str, Any]:
  """Each method's PyTorch step time, eager and channels-last, on the same device."""
  try:
    from kdjax import torch_bench  # pylint: disable=g-import-not-at-top  (torch is optional)
  except ImportError:
    return {'skipped': 'PyTorch is not installed (pip install torch); kdjax.bench '
                       'measured kdjax alone.'}
  configs = {spec: measure.load_config(spec) for spec in specs}
  for config in configs.values():
    config.width = options.width
    if options.dtype:
      config.dtype = options.dtype
  return torch_bench.reference_times(configs, options.batch_size, options.warmup_steps,
                                     options.steps)


def run(specs: Sequence[str], options: measure.Options, with_torch: bool = True,
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
    result = measure.bench_method(spec, spec_options, devices)
    if peak and result['flops_per_s_per_device']:
      # Model FLOPs utilization: XLA's count of the step's FLOPs at the pipelined rate.
      result['mfu'] = result['flops_per_s_per_device'] / peak
    report['methods'][name] = result
  ratios = {}
  baseline = next((r for r in report['methods'].values() if not r['distills']), None)
  if baseline:
    ratios['step_over_bare_forward_backward'] = (
        baseline['step_s'] / measure.bare_forward_backward_s(options, devices[0],
                                                             baseline['dtype']))
    for spec, result in report['methods'].items():
      if result['uses_teacher'] and not result['uses_heads']:
        ratios[f'{spec}_over_baseline_plus_teacher_forward'] = result['step_s'] / (
            baseline['step_s'] + result['teacher_forward_s'])
      if result['uses_heads'] and not result['uses_teacher']:
        ratios[f'{spec}_over_baseline'] = result['step_s'] / baseline['step_s']
  report['overhead_ratios'] = ratios
  if with_host_boundness:
    logging.info('Measuring host-boundness ...')
    report['host_boundness'] = measure.host_boundness(steps_per_call=options.steps_per_call)
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
                  'Study rows (kdjax.study.ROWS), methods with a config of their own '
                  '(dkd: configs/dkd.py:resnet50) or config specs (file.py:arg) to time.')
flags.DEFINE_integer('batch_size', measure.Options.batch_size,
                     'Global batch, split over the devices.')
flags.DEFINE_enum('dtype', measure.Options.dtype,
                  ['', *sorted((*build_lib.DTYPES, build_lib.AUTO))],
                  "Compute dtype of every method, as config.dtype; '' = each config's own "
                  '(the rows: float32; the baseline is then also timed in bfloat16).')
flags.DEFINE_integer('steps', measure.Options.steps, 'Timed calls per method (median reported).')
flags.DEFINE_integer('warmup_steps', measure.Options.warmup_steps, 'Untimed calls first.')
flags.DEFINE_integer('steps_per_call', measure.Options.steps_per_call,
                     'Train steps per mapped call; 0 = the config\'s (auto: 13 on GPUs and '
                     'TPUs, 1 on CPUs).')
flags.DEFINE_integer('width', measure.Options.width, 'Model width; 64 is the real ResNet18.')
flags.DEFINE_bool('torch', True, 'Also time the PyTorch reference (if torch is installed).')
flags.DEFINE_bool('host_boundness', True, 'Also compare the full loop with a bare one.')
flags.DEFINE_string('output', 'bench.json', 'Where to write the JSON results.')
flags.DEFINE_bool('input', False, 'Instead of the methods, time the host stream against '
                  "torchvision's ImageNet pipeline on real-photo JPEGs (kdjax.input_bench).")
flags.DEFINE_integer('input_workers', 1, 'With --input: worker processes of each pipeline.')
flags.DEFINE_integer('input_jpegs', 768, 'With --input: how many JPEGs.')
flags.DEFINE_integer('input_image_size', 224, 'With --input: the crop of the training '
                     'step fed by the stream (a ResNet18 of --width).')
flags.DEFINE_integer('input_batch_size', 256, 'With --input: that step\'s batch.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.input:
    report = input_bench.run(FLAGS.input_jpegs, FLAGS.input_workers, width=FLAGS.width,
                             image_size=FLAGS.input_image_size,
                             batch_size=FLAGS.input_batch_size)
    table = input_bench.format_table(report)
  else:
    options = measure.Options(FLAGS.batch_size, FLAGS.dtype, FLAGS.steps, FLAGS.warmup_steps,
                              FLAGS.width, FLAGS.steps_per_call)
    report = run(FLAGS.methods, options, FLAGS.torch, FLAGS.host_boundness)
    table = format_table(report)
  with open(FLAGS.output, 'w') as f:
    json.dump(report, f, indent=2)
  print(table)
  print(f'Wrote {FLAGS.output}')


if __name__ == '__main__':
  app.run(main)
