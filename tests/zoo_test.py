"""Method zoo part 3 end to end: every config one epoch through main.py on
digits from a trained teacher, CTKD's temperature in metrics.jsonl, MLKD's
views through both data paths and its strong view after a resume."""
import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import digits
from kdjax import build
from kdjax import data
from kdjax import order
from kdjax import steps
from kdjax import teachers
from kdjax import train
from kdjax.data import feeds
from tiny import digits_teacher
from tiny import first
from tiny import flat_leaves
from tiny import read_checkpoint
from tiny import step
from tiny import tiny_config
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = ('ttm', 'wttm', 'nkd', 'mlkd', 'ctkd', 'dot', 'sdd', 'sdd_dkd', 'srd', 'kdsvd')
TINY_DIGITS = ('--config.dataset=digits', '--config.width=4', '--config.stage_sizes=(1,1,1,1)',
               '--config.eval_batch_size=360', '--config.num_epochs=1',
               '--config.warmup_epochs=0', '--config.log_every_steps=0')
def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _train_on_digits(name, workdir, teacher):
  """One epoch of configs/<name>.py through main.py on one device."""
  result = subprocess.run(
      [sys.executable, 'main.py', f'--config=configs/{name}.py:resnet50', f'--workdir={workdir}',
       *TINY_DIGITS, f'--config.teacher={teacher}'],
      cwd=ROOT, text=True, capture_output=True, timeout=900, env=with_devices(1))
  assert result.returncode == 0, result.stderr[-3000:]
  return _records(workdir)


@pytest.mark.parametrize('name', [n for n in ZOO if n not in ('ctkd', 'dot')])
def test_every_zoo_config_trains_an_epoch_on_digits_through_main(tmp_path, digits_self_kd,
                                                                 name):
  record, = _train_on_digits(name, tmp_path / name, digits_self_kd)
  assert record['epoch'] == 1 and math.isfinite(record['train_loss'])
  assert 0 <= record['test_top1'] <= 100
  assert 'temperature' not in record


def test_ctkd_and_dot_train_on_digits_and_ctkd_records_its_temperature(tmp_path,
                                                                        digits_self_kd):
  record, = _train_on_digits('ctkd', tmp_path / 'ctkd', digits_self_kd)
  assert math.isfinite(record['train_loss'])
  # It starts at 1 + 20 sigmoid(1) = 15.62 and has moved in the first epoch.
  assert 1.0 < record['temperature'] < 21.0
  assert record['temperature'] != pytest.approx(1 + 20 / (1 + math.exp(-1)), abs=1e-6)
  record, = _train_on_digits('dot', tmp_path / 'dot', digits_self_kd)
  assert math.isfinite(record['train_loss']) and 'temperature' not in record


def test_mlkd_batches_carry_each_example_twice_on_both_data_paths():
  dataset = data.load_dataset('digits')
  devices = jax.devices()
  rows = order.epoch_order(0, 1, len(dataset.train_labels), 64, len(devices), 'views')
  share = rows.shape[-1] // 2
  np.testing.assert_array_equal(rows[..., :share], rows[..., share:])
  calls = rows.reshape(-1, 2, len(devices), rows.shape[-1]).transpose(0, 2, 1, 3)[:3]
  stream = feeds.make(dataset, devices, input_pipeline='stream', workers=0)
  for call, batch in zip(calls, stream.train_calls(calls, first_step=0)):
    np.testing.assert_array_equal(np.asarray(batch['index']), call)
    np.testing.assert_array_equal(np.asarray(batch['image']), dataset.train_images[call])


# The first 512 digits at batch 64: 8 steps per epoch; 2 epochs.
OVERRIDES = {'width': 4, 'stage_sizes': (1, 1, 1, 1), 'num_epochs': 2, 'log_every_steps': 0,
             'checkpoint_every_steps': 4, 'steps_per_call': 1, 'keep_checkpoints': 20,
             'train_examples': 512, 'method': 'mlkd', 'mixup_alpha': 0.0, 'ce_weight': 0.1,
             'kd_weight': 0.9, 'kd_temperature': 4.0, 'teacher_bn': 'running'}


@pytest.mark.parametrize('pipeline', ['device', 'stream'])
def test_mlkd_resumes_bit_identical_strong_views_included(tmp_path, pipeline):
  # Resumed at step 12 (in epoch 2) of 16 from a copy of the uninterrupted
  # run, the strong views (a function of the seed, the step and the row) come
  # out the same: the final states agree bit for bit, on either data path.
  config = digits.get_config()
  config.update({**OVERRIDES, 'teacher': digits_teacher(str(tmp_path / 'teacher')),
                 'input_pipeline': pipeline})
  reference = str(tmp_path / 'reference')
  train.train_and_evaluate(config, reference)
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(reference, resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', '16'))
  os.remove(os.path.join(resumed, 'summary.json'))
  train.train_and_evaluate(config, resumed)
  state = lambda workdir: flat_leaves(read_checkpoint(
      os.path.join(workdir, 'checkpoints', '16', 'default')))
  expected, got = state(reference), state(resumed)
  assert len(got) == len(expected) and any('params' in path for path in got)
  for path, value in expected.items():
    np.testing.assert_array_equal(got[path], value, err_msg=path)


@pytest.mark.parametrize('method,optimizer', [
    ('ttm_wttm_nkd_ctkd_sdd_sdddkd_kdsvd_srd', 'dot'), ('mlkd', 'sgd')])
def test_the_zoo_learns_from_a_fused_repvgg_teacher(method, optimizer):
  # Any teacher kdjax loads: RepVGG-A0 in its fused eval-mode form (its
  # classifier for SRD, its position logits for SDD, its five stages for
  # KDSVD), every zoo term at once on one device (KDSVD's SVD needs one CPU
  # device) with DOT, whose distillation buffer alone moves CTKD's temperature
  # and SRD's connector; MLKD's views (which hold the CE, so no DOT) apart.
  teacher = teachers.random_teacher('repvgg_a0', 10, width=8, seed=3)
  assert teacher.model.deploy
  config = tiny_config(method=method, teacher='random', teacher_bn='running', optimizer=optimizer,
                       mixup_alpha=0.0, ce_weight=0.5, kd_weight=0.5, warmup_epochs=0.0)
  info = data.DatasetInfo('random', 10, (32, 32, 3), (0.5, 0.4, 0.3), (0.25, 0.25, 0.3))
  run = build.build(config, info, 4, jax.devices()[:1], teacher)
  state = run.init_state(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  rows = np.arange(16).reshape(1, 16)
  if run.method.groups == 2:
    rows = np.concatenate([rows, rows], -1)
  replicated = steps.replicate((state, images, labels, jax.random.PRNGKey(1),
                                teacher.variables), run.devices)
  end, metrics = step(run, *replicated[:3], rows, *replicated[3:])
  assert np.isfinite(first(metrics)['loss'])
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), first(end).params,
                         state.params)
  assert all(jax.tree.leaves(changed))  # every parameter trains, the terms' parts too
