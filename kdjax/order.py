"""The data order: which training examples each row of each step's batch holds.

An epoch visits the training set in the order of epoch_permutation, B
examples a step. What a step's batch is made of besides them is its
composition, one of COMPOSITIONS:
  ''       the B examples alone;
  'pairs'  then B partners, each a random example of its anchor's class (CS-KD);
  'carry'  then the previous step's B examples again (DLB), the last step of
           the previous epoch for an epoch's first step, the step's own at the
           first step of all;
  'views'  then the same B examples again (MLKD's strong view, which the
           train step augments apart).
Rows are laid out per device: each device holds its share of the B examples,
then their partners, carried examples or second views, so an example's second
row is on the device whose loss needs it, whatever the device count. Everything is a
function of (seed, epoch) and the labels.
"""
from typing import Optional

import numpy as np

COMPOSITIONS = ('', 'pairs', 'carry', 'views')


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of the training set in `epoch`: a function of (seed, epoch) only."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def groups(composition: str) -> int:
  """How many rows a step's batch has per example of the epoch's order."""
  return 1 if not composition else 2


def _steps(seed, epoch, num_train, batch_size):
  """[steps, batch_size] of the epoch's order, its last partial batch dropped."""
  steps = num_train // batch_size
  return epoch_permutation(seed, epoch, num_train)[:steps * batch_size].reshape(
      steps, batch_size)


def _partners(seed, epoch, anchors, labels):
  """For each anchor a uniformly drawn training example of its class (itself
  included), as CS-KD's PairBatchSampler draws them, from (seed, epoch)."""
  by_class = np.argsort(labels, kind='stable')
  counts = np.bincount(labels, minlength=labels.max() + 1)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  anchor_labels = labels[anchors]
  offsets = np.random.default_rng([seed, epoch, 1]).integers(
      0, counts[anchor_labels])
  return by_class[starts[anchor_labels] + offsets]


def epoch_order(seed: int, epoch: int, num_train: int, batch_size: int, num_devices: int,
                composition: str = '', labels: Optional[np.ndarray] = None) -> np.ndarray:
  """int32 [steps, num_devices, rows per device] training-set indices of the
  epoch's steps: each device's share of the step's examples, then (with a
  composition) its share of their partners, carried examples or second views. `labels`, the
  training labels, are needed for 'pairs'."""
  if composition not in COMPOSITIONS:
    raise ValueError(f'Unknown composition {composition!r}; one of {COMPOSITIONS}.')
  order = _steps(seed, epoch, num_train, batch_size)
  if composition == 'pairs':
    second = _partners(seed, epoch, order, np.asarray(labels))
  elif composition == 'carry':
    before = (_steps(seed, epoch - 1, num_train, batch_size)[-1:] if epoch else order[:1])
    second = np.concatenate([before, order[:-1]])
  elif composition == 'views':
    second = order
  per_device = batch_size // num_devices
  split = lambda x: x.reshape(len(order), num_devices, per_device)
  rows = split(order) if not composition else np.concatenate(
      [split(order), split(second)], axis=-1)
  return rows.astype(np.int32)

