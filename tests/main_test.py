"""main.py as a user runs it: the digits quick start learns; bad flags fail clearly."""
import json
import os
import subprocess
import sys

import pytest

from configs import baseline
from configs import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, 'configs'))
                 if f.endswith('.py') and f != '__init__.py')


def _main(*args):
  return subprocess.run([sys.executable, 'main.py', *args], cwd=ROOT, text=True,
                        capture_output=True, timeout=600)


def test_digits_quick_start_reaches_90_percent(tmp_path):
  result = _main('--config=configs/digits.py', f'--workdir={tmp_path}',
                 '--config.num_epochs=10')
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'summary.json') as f:
    summary = json.load(f)
  assert summary['epochs_completed'] == 10
  assert summary['final_top1'] >= 90.0, summary
  assert 'epoch 10/10' in result.stderr and 'ETA' in result.stderr
  assert 'orbax' not in result.stderr  # orbax's per-save chatter is filtered


def test_unknown_config_field_is_an_error_naming_it(tmp_path):
  result = _main('--config=configs/baseline.py', f'--workdir={tmp_path}',
                 '--config.num_epoch=3')
  assert result.returncode != 0
  assert "Unknown config field in the command line: 'num_epoch'" in result.stderr
  assert not os.listdir(tmp_path)


def test_baseline_config_is_the_studys_setup():
  config = baseline.get_config()
  assert (config.method, config.model, config.dataset) == ('baseline', 'resnet18', 'cifar100')
  assert (config.batch_size, config.learning_rate, config.momentum, config.weight_decay,
          config.num_epochs, config.warmup_epochs, config.seed) == (
              128, 0.1, 0.9, 5e-4, 200, 5.0, 0)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_has_exactly_the_default_fields(name):
  module = {}
  with open(os.path.join(ROOT, 'configs', name)) as f:
    exec(compile(f.read(), name, 'exec'), module)  # pylint: disable=exec-used
  config = module['get_config']()
  assert set(config.keys()) == set(default.get_config().keys())
