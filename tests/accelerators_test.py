"""What accelerators need of kdjax, checked on CPUs: any device count, XLA flags
only where they are read, no data-dependent loops, several steps per call,
one compilation, object-store workdirs."""
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import default
from kdjax import build
from kdjax import checkpoint
from kdjax import data
from kdjax import steps
from kdjax import teachers
from kdjax import workdir as workdir_lib
from tiny import flat_leaves
from tiny import random_teacher
from tiny import tiny_config
from tiny import train_on_mock_cifar
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFO = data.DatasetInfo('random', 10, (32, 32, 3), (0.5, 0.4, 0.3), (0.25, 0.25, 0.3))


def _python(code, env):
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, text=True,
                        capture_output=True, timeout=600)


@pytest.mark.parametrize('num_devices', [1, 8])
def test_1_or_8_devices_evaluate_each_test_example_once_with_the_default_eval_batch(num_devices):
  # The default eval batch (500) does not divide over 8 devices: evaluation pads
  # it to 504 and still counts each test image once; one device pads the 37
  # examples to one batch of 500.
  assert default.get_config().eval_batch_size == 500
  env = with_devices(num_devices, {**os.environ, 'PYTHONPATH': f'{ROOT}:{ROOT}/tests'})
  result = _python(
      'import json, jax, numpy as np\n'
      'from kdjax import build, data, evaluate, steps\n'
      'from kdjax.data import feeds\n'
      'from tiny import tiny_config\n'
      'devices = jax.devices()\n'
      'info = data.DatasetInfo("random", 10, (32, 32, 3), (0.5,) * 3, (0.25,) * 3)\n'
      'config = tiny_config(eval_batch_size=500)\n'
      'run = build.build(config, info, 4, devices)\n'
      'state = run.init_state(jax.random.PRNGKey(0))\n'
      'rng = np.random.default_rng(1)\n'
      'images = rng.integers(0, 256, (37, 32, 32, 3), np.uint8)\n'
      'labels = rng.integers(0, 10, 37).astype(np.int32)\n'
      'variables = {"params": state.params, "batch_stats": state.batch_stats}\n'
      'feed = feeds.Resident((), (images, labels), devices)\n'
      'result = evaluate.evaluate(run.eval_step, steps.replicate(variables, devices), feed,\n'
      '                           37, config.eval_batch_size, devices)\n'
      'logits = run.apply(state.params, state.batch_stats, images / 255.0, train=False)[0]\n'
      'expected = 100 * float(np.mean(np.argmax(logits["logits"], -1) == labels))\n'
      'print(json.dumps([len(devices), result["count"], result["top1"], expected]))\n', env)
  assert result.returncode == 0, result.stderr[-3000:]
  devices_seen, count, top1, expected = json.loads(result.stdout.splitlines()[-1])
  assert (devices_seen, count) == (num_devices, 37) and top1 == pytest.approx(expected)


def _xla_flags_after_import(env):
  return _python('import os, kdjax; print(os.environ.get("XLA_FLAGS", ""))', env).stdout


def test_the_cpu_option_is_set_only_where_jax_runs_on_the_cpu_alone(tmp_path):
  ynn = '--xla_cpu_experimental_ynn_fusion_type='
  env = {k: v for k, v in os.environ.items() if k not in ('XLA_FLAGS', 'JAX_PLATFORMS')}
  env['PYTHONPATH'] = ROOT
  assert _xla_flags_after_import({**env, 'JAX_PLATFORMS': 'cpu'}).strip() == ynn
  assert _xla_flags_after_import(env).strip() == ynn  # this machine: no plugin
  # A GPU or TPU plugin may not know the option, and it would abort on it.
  assert _xla_flags_after_import({**env, 'JAX_PLATFORMS': 'cuda'}).strip() == ''
  assert _xla_flags_after_import({**env, 'JAX_PLATFORMS': 'cpu,tpu'}).strip() == ''
  plugin = tmp_path / 'jax_plugins' / 'some_accelerator'
  plugin.mkdir(parents=True)
  (plugin / '__init__.py').write_text('def initialize():\n  pass\n')
  assert _xla_flags_after_import({**env, 'PYTHONPATH': f'{tmp_path}:{ROOT}'}).strip() == ''


ROW_CONFIGS = ['configs/baseline.py', 'configs/offline_kd.py:repvgg_a0',
               'configs/offline_kd_no_mixup.py:repvgg_a0', 'configs/self_kd.py',
               'configs/offline_self_kd.py:repvgg_a0']


# And CRD's, which samples negatives and updates its memory in the step.
@pytest.mark.parametrize('spec', [*ROW_CONFIGS, 'configs/crd.py:repvgg_a0'])
def test_no_train_step_of_a_row_has_a_data_dependent_loop(spec):
  # XLA:GPU runs a while loop by copying its condition to the host each trip.
  config = build.load_config(spec)
  config.update(width=4, stage_sizes=(1, 1, 1, 1), batch_size=8)
  run = build.build(config, INFO, 4, jax.devices()[:1], random_teacher())
  step = jax.vmap(lambda state, batch, rng, lam, teacher: steps.train_step(
      state, batch, rng, lam, teacher, loss_fn=run.loss_fn, augment=config.augment,
      rotation_degrees=config.rotation_degrees, mixup=bool(config.mixup_alpha),
      mixup_partner=config.mixup_partner, num_classes=10,
      train_labels=np.zeros(64, np.int32)), axis_name=steps.AXIS)
  # Shapes only: nothing is initialized or compiled.
  args = jax.tree.map(lambda x: jax.ShapeDtypeStruct((1, *x.shape), x.dtype), (
      jax.eval_shape(run.init_state, jax.random.PRNGKey(0)),
      {'image': np.zeros((8, 32, 32, 3), np.uint8), 'label': np.zeros(8, np.int32),
       'index': np.zeros(8, np.int32)},
      jax.random.PRNGKey(0), np.float32(0.3), random_teacher().variables if run.teacher else {}))
  exported = jax.export.export(jax.jit(step), platforms=('cuda', 'tpu'))(*args)
  assert 'stablehlo.while' not in exported.mlir_module()
  # The check sees loops: jax.random.beta, which mixup drew from before, has them.
  beta = jax.export.export(jax.jit(lambda key: jax.random.beta(key, 0.4, 0.4)),
                           platforms=('cuda', 'tpu'))(jax.random.PRNGKey(0))
  assert 'stablehlo.while' in beta.mlir_module()


def test_a_call_of_three_steps_equals_three_calls_of_one():
  config = tiny_config(mixup_alpha=0.4)
  devices = jax.devices()[:4]
  run = build.build(config, INFO, 3, devices)
  state = run.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images, labels, st, key = steps.replicate(
      (rng.integers(0, 256, (48, 32, 32, 3), np.uint8),
       rng.integers(0, 10, 48).astype(np.int32), state, jax.random.PRNGKey(1)), devices)
  order = np.arange(48, dtype=np.int32).reshape(3, 4, 4).transpose(1, 0, 2)
  lams = np.broadcast_to(data.mixup_lambdas(0, 0, 3, 0.4), (4, 3))
  three, three_metrics = run.train_steps(st, images, labels, order, lams, key, {})
  one = steps.replicate(state, devices)
  losses = []
  for i in range(3):
    one, metrics = run.train_steps(one, images, labels, order[:, i:i + 1], lams[:, i:i + 1],
                                   key, {})
    losses.append(np.asarray(metrics['loss'])[0, 0])
  # The same arithmetic; XLA fuses a loop's body differently from a lone step
  # (which runs without one), moving values by units in their last place: 5e-7
  # relative on the loss; a BatchNorm bias near zero (6e-5, where its layer's
  # largest is 3e-3) moved 3e-9. Bounded per leaf, relative to its largest value.
  np.testing.assert_allclose(steps.fetch_first(three_metrics)['loss'], losses, rtol=2e-6)
  start = flat_leaves(state.params)
  for path, value in flat_leaves(steps.fetch_first(three)).items():
    np.testing.assert_allclose(value, flat_leaves(steps.fetch_first(one))[path], rtol=2e-6,
                               atol=1e-5 * np.abs(value).max(), err_msg=path)
  assert int(np.asarray(three.step)[0]) == 3
  changed = [not np.allclose(v, start[p]) for p, v in
             flat_leaves(steps.fetch_first(three.params)).items()]
  assert any(changed)


def test_the_train_call_compiles_once_per_run(tmp_path, monkeypatch):
  # The mapped call is traced once per compilation: count the traces over two
  # epochs of 2 calls each, with a checkpoint, a log line and a profile between calls.
  traces = []

  def counted(*args, **kwargs):
    traces.append(1)
    return train_steps(*args, **kwargs)
  train_steps = steps.train_steps
  monkeypatch.setattr(steps, 'train_steps', counted)
  summary = train_on_mock_cifar(
      tiny_config(steps_per_call=2, checkpoint_every_steps=2, log_every_steps=1,
                  profile_steps=2), tmp_path / 'run')
  assert summary['epochs_completed'] == 2 and len(traces) == 1
  # The profile of 2 steps after the first call, as TensorBoard's profiler reads it.
  assert list((tmp_path / 'run' / 'plugins' / 'profile').glob('*/*.xplane.pb'))


def test_a_run_resumed_between_calls_ends_bit_identical(tmp_path, cifar_teacher):
  # 4 steps an epoch in calls of 2; a checkpoint falls due at step 3, inside a
  # call, and is taken at its end (step 4), then at 6: resume from 6. Offline,
  # as the study's rows: mixed with a permutation, the teacher on batch statistics.
  config = tiny_config(steps_per_call=2, checkpoint_every_steps=3, method='offline',
                       teacher=cifar_teacher, mixup_alpha=0.4)
  assert (config.teacher_bn, config.mixup_partner) == ('batch', 'permutation')
  stored = teachers.load(cifar_teacher, bn='batch').variables
  reference = tmp_path / 'reference'
  summary = train_on_mock_cifar(config, reference)
  # The teacher's stored statistics are read, never written.
  jax.tree.map(np.testing.assert_array_equal, teachers.load(cifar_teacher, bn='batch').variables,
               stored)
  run = tmp_path / 'run'
  shutil.copytree(reference, run)
  assert {'6', '8'} <= set(os.listdir(run / 'checkpoints'))
  shutil.rmtree(run / 'checkpoints' / '8')
  assert train_on_mock_cifar(config, run)['final_top1'] == summary['final_top1']
  final = [flat_leaves(ocp.PyTreeCheckpointer().restore(w / 'checkpoints' / '8' / 'default'))
           for w in (reference, run)]
  for path, value in final[0].items():
    np.testing.assert_array_equal(final[1][path], value, err_msg=path)


def test_a_url_workdir_reaches_orbax_unchanged(monkeypatch, tmp_path):
  seen = []

  class Manager:
    def __init__(self, directory, **kwargs):
      del kwargs
      seen.append(directory)

  monkeypatch.setattr(checkpoint.ocp, 'CheckpointManager', Manager)
  checkpoint.create_manager('gs://bucket/runs/baseline', 2)
  checkpoint.create_manager(str(tmp_path / 'run'), 2)
  assert [os.fspath(d) for d in seen] == ['gs://bucket/runs/baseline/checkpoints',
                                          f'{tmp_path}/run/checkpoints']
  assert os.fspath(workdir_lib.path('runs/x')) == os.path.join(os.getcwd(), 'runs/x')
  assert not workdir_lib.is_local('gs://bucket/runs/baseline')
