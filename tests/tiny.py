"""Tiny configs, runs and teachers shared by the tests (a helper module, not a test file)."""
import functools

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds

from configs import default
from kdjax import steps
from kdjax import teachers
from kdjax import train


def tiny_config(**overrides):
  """The study's defaults on a tiny ResNet18, with a schedule that fits 2 epochs
  (one warm-up then a cosine to 0, per iteration)."""
  config = default.get_config()
  config.update({'width': 4, 'stage_sizes': (1, 1, 1, 1), 'batch_size': 16,
                 'eval_batch_size': 40, 'num_epochs': 2, 'schedule': 'warmup_cosine',
                 'warmup_epochs': 1.0, 'min_learning_rate': 0.0, 'log_every_steps': 0,
                 **overrides})
  return config


def train_on_mock_cifar(config, workdir, num_examples=64):
  """train_and_evaluate on TFDS mock CIFAR-100 (`num_examples` per split)."""
  with tfds.testing.mock_data(num_examples=num_examples):
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
