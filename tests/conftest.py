"""Shared test setup: 4 fake CPU devices, so pmap code runs as on a 4-chip host."""
import atexit
import os
import shutil
import sys
import tempfile

# Must happen before jax is imported anywhere. Compilation dominates the
# suite's time, and two XLA:CPU options shorten it without slowing the steps:
# optimization level 1 (LLVM took ~1.5 s per threefry random call site at the
# default level, 0.2 s at level 1) and XLA's older loop-fusion emitters (a
# step with heads compiled ~20 % sooner; a tiny Fashion-MNIST epoch ran 7.6 s
# per 100 steps either way).
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4'
                           ' --xla_backend_optimization_level=1'
                           ' --xla_cpu_use_fusion_emitters=false')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Many tests (and the main.py subprocesses and pytest-xdist workers, which
# inherit the environment) build identical executables; a cache for this
# session lets them compile once.
if 'KDJAX_TEST_JAX_CACHE' not in os.environ:
  os.environ['KDJAX_TEST_JAX_CACHE'] = tempfile.mkdtemp(prefix='kdjax-test-jax-cache-')
  atexit.register(shutil.rmtree, os.environ['KDJAX_TEST_JAX_CACHE'], ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ['KDJAX_TEST_JAX_CACHE']
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import pytest  # pylint: disable=g-import-not-at-top  (after the XLA flags above)


@pytest.fixture(scope='session')
def digits_self_kd(tmp_path_factory):
  """A workdir of the study's row 4 recipe (heads, mixup) that main.py trained
  for one epoch on one device: a narrow, shallow ResNet18 on digits."""
  import subprocess  # pylint: disable=g-import-not-at-top
  from tiny import with_devices  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('digits_self_kd')
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/self_kd.py', f'--workdir={workdir}',
       '--config.dataset=digits', '--config.width=4', '--config.stage_sizes=(1, 1, 2, 1)',
       '--config.num_epochs=1', '--config.schedule=warmup_cosine', '--config.warmup_epochs=0.0',
       '--config.log_every_steps=0'],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=with_devices(1),
      text=True, capture_output=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.fixture(scope='session')
def cifar_teacher(tmp_path_factory):
  """A kdjax workdir to teach from: a tiny baseline trained 2 epochs on mock CIFAR-100."""
  from tiny import tiny_config, train_on_mock_cifar  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('cifar_teacher')
  train_on_mock_cifar(tiny_config(), workdir)
  return str(workdir)
