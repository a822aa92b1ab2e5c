"""kdjax.bench on tiny models; its PyTorch reference steps; the XLA:CPU option kdjax sets."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import bench
from kdjax import input_bench
from kdjax import measure
from kdjax import models

from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch = pytest.importorskip('torch')
from kdjax import torch_bench  # pylint: disable=g-import-not-at-top  (needs torch)
from kdjax import torch_models  # pylint: disable=g-import-not-at-top


# The PyTorch parts run at the real width: PyTorch 2.13's oneDNN at times never
# returned from a channels-last 1x1 convolution's weight gradient at width 4.
TORCH_OPTIONS = measure.Options(batch_size=2, steps=1, warmup_steps=0, width=64)


def test_run_reports_every_figure():
  options = measure.Options(batch_size=8, dtype='float32', steps=2, warmup_steps=0, width=4,
                            steps_per_call=2)
  methods = ['baseline', 'offline_kd_repvgg_a0']
  report = bench.run(methods, options, with_torch=False, with_host_boundness=False)
  baseline, offline = report['methods']['baseline'], report['methods']['offline_kd_repvgg_a0']
  # One dtype for all (the command-line test times the rows' own and bfloat16).
  assert list(report['methods']) == methods
  for result in report['methods'].values():
    assert result['compile_s'] > 0 and result['step_s'] > 0
    assert (result['steps_per_call'], result['dtype']) == (2, 'float32')
    assert result['train_images_per_s'] == pytest.approx(8 / result['pipelined_step_s'])
    assert result['train_images_per_s_per_device'] == pytest.approx(
        result['train_images_per_s'] / len(jax.local_devices()))
    assert result['eval_images_per_s'] > 0
  # XLA's count for the offline step exceeds the baseline's by about the
  # teacher's forward pass as the step runs it (mixup and the KL term add little).
  config = measure.load_config('offline_kd_repvgg_a0')
  teacher = measure.teacher_for(config, width=4)
  forward = measure.teacher_forward(config, teacher).lower(
      teacher.variables, jnp.zeros((1, 2, 32, 32, 3))).compile().cost_analysis()['flops'] / 2
  assert offline['flops_per_image'] - baseline['flops_per_image'] == pytest.approx(
      forward, rel=0.1)
  # A tiny ResNet18's train step against a tiny A0's forward in its three-branch form.
  assert baseline['flops_per_image'] > 1.5 * forward
  ratios = report['overhead_ratios']
  assert set(ratios) == {'step_over_bare_forward_backward',
                         'offline_kd_repvgg_a0_over_baseline_plus_teacher_forward'}
  assert all(r > 0 for r in ratios.values())

  # The PyTorch reference computes the study's terms only, and says so for others.
  reference = bench.torch_reference([*methods, 'sp'], TORCH_OPTIONS)
  assert reference['sp/skipped'] == "no PyTorch reference step for ['sp']"
  bench.add_torch_reference(report, reference)
  for spec in methods:
    for layout in ('eager', 'channels_last'):
      assert report['methods'][spec][f'time_over_torch_{layout}'] == pytest.approx(
          report['methods'][spec]['step_s'] / reference[f'{spec}/{layout}_step_s'])
  json.dumps(report)  # the JSON file's content
  table = bench.format_table(report)
  assert 'baseline' in table and 'offline_kd_repvgg_a0' in table


def test_the_command_line_on_one_device_times_a_method_and_the_full_loop(tmp_path):
  # As on a single GPU: one device, the host-boundness loop included.
  output = tmp_path / 'bench.json'
  result = subprocess.run(
      [sys.executable, '-m', 'kdjax.bench', '--methods=baseline', '--width=4', '--batch_size=8',
       '--steps=1', '--warmup_steps=0', '--torch=false', f'--output={output}'], cwd=ROOT,
      env=with_devices(1), text=True, capture_output=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(output.read_text())
  assert report['num_devices'] == 1 and report['methods']['baseline']['step_s'] > 0
  # The rows in their float32, and the baseline also in bfloat16.
  assert [(name, r['dtype']) for name, r in report['methods'].items()] == [
      ('baseline', 'float32'), ('baseline@bfloat16', 'bfloat16')]
  assert report['methods']['baseline@bfloat16']['step_s'] > 0
  host = report['host_boundness']
  assert host['loop_steps_per_s'] > 0 and host['bare_steps_per_s'] > 0
  assert host['ratio'] == host['loop_steps_per_s'] / host['bare_steps_per_s']
  assert 'cpu x1, batch 8' in result.stdout


def test_unknown_config_and_peaks():
  with pytest.raises(ValueError, match=r"Unknown method 'offline_kb': name a row of the "
                     r"study \(baseline, offline_kd_repvgg_a0, .*\), a config of configs/ "
                     r"\(at, crd, cs_kd, .*, dlb, .*, ps_kd, .*, uskd, vid, wttm\) or a config file"):
    measure.load_config('offline_kb')
  # A config of configs/ by its name, with the study's ResNet50 where it takes a teacher.
  offline = measure.load_config('offline_kd')
  assert (offline.method, offline.teacher) == ('offline', 'teachers/resnet50')
  assert measure.load_config('cs_kd').method == 'cskd'
  assert measure.load_config('configs/feature_kd.py:resnet50').method == 'feature'
  dkd = measure.load_config('dkd')  # configs/dkd.py with the study's ResNet50
  assert (dkd.method, dkd.teacher) == ('dkd', 'teachers/resnet50')
  assert bench.bf16_peak_flops('NVIDIA H100 PCIe') == 756e12
  assert bench.bf16_peak_flops('NVIDIA H100 80GB HBM3') == 989e12
  assert bench.bf16_peak_flops('TPU v5 lite') == 197e12
  assert bench.bf16_peak_flops('cpu') is None


def test_torch_fused_repvgg_equals_its_branches():
  torch.manual_seed(0)
  model = torch_models.randomize_batchnorm(torch_models.build('repvgg_a0', width=16))
  images = torch.rand(2, 3, 32, 32)
  with torch.no_grad():
    expected = model(images)
    fused = torch_bench.fuse_repvgg(model)(images)
  assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
  np.testing.assert_allclose(fused.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('spec', ['self_kd', 'offline_self_kd_resnet50'])
def test_torch_reference_step_reaches_every_student_parameter(spec):
  config = measure.load_config(spec)
  terms = measure.build_lib.check_config(config, 1).terms
  device = torch.device('cpu')
  step, student = torch_bench.make_step(
      config, terms, 'resnet50' if 'offline' in terms else None, TORCH_OPTIONS.batch_size,
      device, channels_last=True, dtype='float32')
  assert torch_bench.time_step(step, device, warmup=0, steps=1) > 0
  grads = {name: p.grad for name, p in student.named_parameters()}
  assert any(name.startswith('heads.2.') for name in grads)
  assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def _compiled_conv_hlo(env):
  code = ('import kdjax, jax, jax.numpy as jnp, os; from jax import lax\n'
          'x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))\n'
          'print(os.environ["XLA_FLAGS"])\n'
          'print(jax.jit(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", '
          'dimension_numbers=("NHWC", "HWIO", "NHWC"))).lower(x, w).compile().as_text())')
  return subprocess.run([sys.executable, '-c', code], env=env, check=True,
                        capture_output=True, text=True).stdout


def test_importing_kdjax_keeps_convolutions_off_ynnpack_unless_told():
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['PYTHONPATH'] = os.path.dirname(os.path.dirname(os.path.abspath(models.__file__)))
  flags_set, hlo = _compiled_conv_hlo(env).split('\n', 1)
  assert flags_set == '--xla_cpu_experimental_ynn_fusion_type='
  assert 'ynn_fusion' not in hlo and 'convolution(' in hlo
  # A user's own choice is kept: here XLA:CPU's default, which hands convolutions over.
  own = ('--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,'
         'LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION')
  assert 'ynn_fusion' in _compiled_conv_hlo({**env, 'XLA_FLAGS': own})


def test_the_input_benchmark_times_both_pipelines_and_the_wait():
  report = input_bench.run(count=64, workers=0, width=4, image_size=32, batch_size=8,
                           num_steps=6)
  for rate in ('stream_images_per_s', 'tf_data_images_per_s', 'torchvision_images_per_s'):
    assert report[rate] > 0, report
  assert report['stream_over_torchvision'] == pytest.approx(
      report['stream_images_per_s'] / report['torchvision_images_per_s'])
  training = report['training_on_the_stream']
  assert 0 <= training['wait_fraction'] < 1 and training['steps_per_s'] > 0
  assert 'kdjax stream' in input_bench.format_table(report)
