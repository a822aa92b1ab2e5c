"""main.py as a user runs it: the digits quick start learns; bad flags fail clearly."""
import json
import os
import re
import subprocess
import sys

from configs import baseline
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args, num_devices=4, module=('main.py',)):
  return subprocess.run([sys.executable, *module, *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=600, env=with_devices(num_devices))


TINY_DIGITS = ('--config.dataset=digits', '--config.width=4', '--config.stage_sizes=(1,1,1,1)',
               '--config.eval_batch_size=360', '--config.num_epochs=1',
               '--config.warmup_epochs=0', '--config.log_every_steps=0')


def _summary(workdir):
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


def test_digits_quick_start_on_one_device_learns_teaches_and_is_evaluated(tmp_path):
  # The README's digits quick start (10 epochs) on one device, as on a single
  # GPU; then that workdir teaches offline + self through main.py and is
  # evaluated by kdjax.evaluate (configs_test runs every config, self_kd.py
  # included, on mock CIFAR-100); one test, so that a parallel run trains the
  # quick start once.
  teacher = str(tmp_path / 'digits')
  result = _main('--config=configs/digits.py', f'--workdir={teacher}', '--config.num_epochs=10',
                 num_devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = _summary(teacher)
  assert summary['epochs_completed'] == 10
  assert summary['final_top1'] >= 90.0, summary
  assert 'epoch 10/10' in result.stderr and 'ETA' in result.stderr
  assert 'over 1 devices in 1 process(es)' in result.stderr
  # The terminal shows kdjax's lines and clu's progress notes: no library's
  # INFO chatter (orbax's saves), no TensorFlow start-up notes.
  sources = set(re.findall(r'^I\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\]', result.stderr, re.M))
  assert {'train.py', 'records.py', 'local.py'} <= sources, sources
  assert sources <= {'train.py', 'records.py', 'data.py', 'local.py', 'main.py'}, sources
  assert 'orbax' not in result.stderr and 'oneDNN' not in result.stderr
  assert 'absl::InitializeLog' not in result.stderr

  workdir = str(tmp_path / 'offline_self')
  result = _main('--config=configs/offline_self_kd.py:resnet50', f'--workdir={workdir}',
                 *TINY_DIGITS, f'--config.teacher={teacher}', num_devices=1)
  assert result.returncode == 0, result.stderr[-3000:]
  student = _summary(workdir)
  assert student['epochs_completed'] == 1
  for name in ('top1', 'head1_top1', 'head2_top1', 'head3_top1', 'ensemble_top1'):
    assert 0 <= student[f'final_{name}'] <= student[f'best_{name}'] <= 100, name
  assert 'heads ' in result.stderr and 'ensemble ' in result.stderr  # per-epoch log
  assert student['teacher_top1'] == summary['best_top1']
  assert f'Teacher {teacher} (resnet18, checkpoint step' in result.stderr

  # kdjax.evaluate reads the dataset from the workdir's config.json.
  result = _main(f'--teacher={teacher}', num_devices=1, module=('-m', 'kdjax.evaluate'))
  assert result.returncode == 0, result.stderr[-3000:]
  line = result.stdout.strip()
  assert line.startswith(f'{teacher}: test top-1 {summary["best_top1"]:.2f}%, top-5 ')
  assert line.endswith('% on 360 digits test images.')
  # It says in one line what it cannot do.
  result = _main(f'--teacher={teacher}', '--dataset=cifar100', num_devices=1,
                 module=('-m', 'kdjax.evaluate'))
  assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
      f'error: The teacher in {teacher} predicts 10 classes, but cifar100 has 100; use a '
      'teacher trained on cifar100.'), result.stderr[-3000:]
  assert 'Traceback' not in result.stderr


def test_unknown_config_field_is_an_error_naming_it(tmp_path):
  result = _main('--config=configs/baseline.py', f'--workdir={tmp_path}',
                 '--config.num_epoch=3')
  assert result.returncode != 0
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: unknown config field 'num_epoch' Did you mean \"num_epochs\"")
  assert not os.listdir(tmp_path)


def test_baseline_config_is_the_studys_setup():
  config = baseline.get_config()
  assert (config.method, config.model, config.dataset) == ('baseline', 'resnet18', 'cifar100')
  assert (config.batch_size, config.momentum, config.weight_decay, config.num_epochs,
          config.mixup_alpha, config.rotation_degrees, config.seed) == (
              128, 0.9, 5e-4, 200, 0.0, 15.0, 0)
  # CosineAnnealingWarmUpRestarts(T_0=30, T_mult=1, eta_max=0.1, T_up=1, gamma=0.5)
  # over SGD(lr=1e-3).
  assert (config.schedule, config.learning_rate, config.min_learning_rate,
          config.restart_epochs, config.warmup_epochs, config.restart_decay) == (
              'restarts', 0.1, 1e-3, 30.0, 1.0, 0.5)
