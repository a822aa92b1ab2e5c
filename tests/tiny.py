"""Tiny configs, runs and teachers shared by the tests (a helper module, not a test file)."""
import contextlib
import functools
import os
from unittest import mock

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from configs import default
from kdjax import checkpoint
from kdjax import steps
from kdjax import teachers
from kdjax import train
from kdjax import workdir as workdir_lib


def tiny_config(**overrides):
  """The study's defaults on a tiny ResNet18, with a schedule that fits 2 epochs
  (one warm-up then a cosine to 0, per iteration)."""
  config = default.get_config()
  config.update({'width': 4, 'stage_sizes': (1, 1, 1, 1), 'batch_size': 16,
                 'eval_batch_size': 40, 'num_epochs': 2, 'schedule': 'warmup_cosine',
                 'warmup_epochs': 1.0, 'min_learning_rate': 0.0, 'log_every_steps': 0,
                 **overrides})
  return config


@contextlib.contextmanager
def mock_tfds(num_examples):
  """TFDS's mock data (`num_examples` random examples per split) standing for a
  prepared dataset (CIFAR-100, Fashion-MNIST): TFDS mocks reading and
  preparing it, and a prepared dataset is one kdjax neither prepares nor
  downloads."""
  with tfds.testing.mock_data(num_examples=num_examples), mock.patch.object(
      tfds.core.DatasetBuilder, 'is_prepared', return_value=True):
    yield


def save_with_a_device_axis(workdir, step, tree, top1):
  """A checkpoint as kdjax wrote one on a single device before saving one copy:
  every leaf of `tree` on a leading axis of 1."""
  manager = checkpoint.create_manager(str(workdir), keep_last=2)
  manager.save(step, args=ocp.args.StandardSave(jax.tree.map(lambda x: np.asarray(x)[None],
                                                             tree)), metrics={'top1': top1})
  manager.wait_until_finished()


def train_on_mock_cifar(config, workdir, num_examples=64):
  """train_and_evaluate on TFDS mock CIFAR-100 (`num_examples` per split)."""
  with mock_tfds(num_examples):
    return train.train_and_evaluate(config, str(workdir))


def read_checkpoint(directory):
  """Every array of an orbax checkpoint, as numpy, whichever devices wrote it."""
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.metadata(directory).item_metadata.tree
  as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
  return checkpointer.restore(directory, args=ocp.args.PyTreeRestore(restore_args=as_numpy))


def first(tree):
  """Device 0's copy (flax's unreplicate mis-handles a pmap over 1 of 4 devices)."""
  return jax.tree.map(lambda x: np.asarray(x)[0], tree)


@functools.cache
def random_teacher(num_classes=10):
  """A tiny ResNet18 with random weights and its own normalization."""
  return teachers.random_teacher('resnet18', num_classes, seed=7, mean=(0.4, 0.4, 0.4),
                                 std=(0.2, 0.3, 0.2), width=4, stage_sizes=(1, 1, 1, 1))


def flat_leaves(tree):
  """{'[\'params\'][\'conv\'][\'kernel\']': leaf, ...} for comparing trees leaf by leaf."""
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def unmapped(fn):
  """Jitted `fn`, whose collectives run over steps.AXIS (BatchNorm statistics,
  RKD's gather), on one batch outside a pmap: under a vmap over a size-1 axis."""
  def on_one_device(*args):
    outputs = jax.vmap(fn, axis_name=steps.AXIS)(*jax.tree.map(lambda x: x[None], args))
    return jax.tree.map(lambda x: x[0], outputs)
  return jax.jit(on_one_device)


def step(run, state, images, labels, indices, key, teacher_variables, lam=0.3):
  """One train step of `run` on replicated data: `indices` [devices, per-device
  batch], mixup weight `lam` (if the config mixes). Returns (state, metrics)
  with each metric a [devices] array."""
  state, metrics = run.train_steps(state, images, labels, indices[:, None],
                                   np.full((len(indices), 1), lam, np.float32), key,
                                   teacher_variables)
  return state, jax.tree.map(lambda x: x[:, 0], metrics)


def with_devices(num_devices, env=None):
  """A subprocess environment (default: this one's) in which JAX sees
  `num_devices` CPU devices instead of the suite's 4, its other XLA options kept."""
  env = dict(os.environ if env is None else env)
  env['XLA_FLAGS'] = env['XLA_FLAGS'].replace(
      'device_count=4', f'device_count={num_devices}')
  return env


def assert_same_steps_up_to_rounding(got, want):
  """Two checkpoints (read_checkpoint's trees) of the same steps, computed on
  different device or process counts, agree up to float rounding.

  XLA:CPU sums a conv's weight gradient in an order that depends on how many
  devices share a process's threads, so 2 processes x 2 devices cannot be
  bit-identical to 1 x 4, nor 1 process of 1 device to 1 of 4 (2 steps apart:
  median parameter 1.1e-5, largest 6.7e-3 relative, measured). These bounds
  hold that noise with a margin; feeding a wrong slice of the batch exceeds
  each of them 37- to 60-fold (measured: BN statistics 6e-2, params median
  3.7e-3, max 1.0)."""
  assert int(got['step']) == int(want['step'])
  def relative(collection):
    a, b = flat_leaves(got[collection]), flat_leaves(want[collection])
    assert a.keys() == b.keys()
    return np.array([np.linalg.norm(a[k] - b[k]) / np.linalg.norm(b[k]) for k in b])
  assert relative('batch_stats').max() < 1e-3
  params = relative('params')
  assert len(params) > 30 and np.median(params) < 1e-4 and params.max() < 2e-2


def digits_teacher(directory):
  """A teacher directory of a tiny random ResNet18 for the digits' 10 classes."""
  teacher = random_teacher(10)
  workdir_lib.write_model_file(directory, 'resnet18', 10, {'width': 4, 'stage_sizes': [
      1, 1, 1, 1]}, teacher.mean, teacher.std, (32, 32, 3))
  checkpoint.save_variables(directory, jax.tree.map(np.asarray, teacher.variables))
  return directory
