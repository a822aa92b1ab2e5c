"""The host stream: grain reads the rows that the data order names and
transforms them on the host, a bounded number of batches ahead.

A row is (example index, step, position in the step's global batch). Arrays
(the small datasets) are only gathered: the device crops and flips them as
it does its resident copy, so both paths give the same pixels. Encoded
images (ImageNet) are decoded and cropped here, each crop drawn from a numpy
Generator seeded by (seed, step, position): a function of the run's seed and
the data order alone, so a resumed run sees the same pixels. Workers are
grain's: processes (`workers` > 0, each with its own copy of the source's
handles) or threads of this process (`workers` 0).
"""
from typing import Iterator

from absl import flags
import grain
import numpy as np

from kdjax import errors
from kdjax.data import transforms


class InputWorkerError(errors.InputError):
  """A worker of the stream died (killed, out of memory): one line, exit 2,
  wherever the stream was read."""


class _LoadBatch(grain.transforms.Map):
  """A batch's rows -> their uint8 images, gathered, or decoded and transformed."""

  def __init__(self, images, encoded: bool, size: int, seed: int, train: bool):
    self._images, self._encoded, self._size = images, encoded, size
    self._seed, self._train = seed, train

  def _load(self, index, step, position):
    if not self._encoded:
      return self._images[index]
    if not self._train:
      return transforms.eval_image(self._images[index], self._size)
    rng = np.random.default_rng([self._seed, step, position])
    return transforms.train_image(self._images[index], rng, self._size)

  def map(self, rows):
    first = self._load(*(int(x) for x in rows[0]))
    batch = np.empty((len(rows), *first.shape), first.dtype)
    batch[0] = first
    for i, row in enumerate(rows[1:], start=1):
      batch[i] = self._load(*(int(x) for x in row))
    return batch


def batches(images, rows: np.ndarray, rows_per_batch: int, *, encoded: bool, size: int,
            seed: int, train: bool, workers: int, prefetch: int) -> Iterator[np.ndarray]:
  """uint8 [rows_per_batch, H, W, C] batches of `rows` (int64 [n, 3] of
  (index, step, position), n a multiple of rows_per_batch), in order:
  `images[index]` as is, or (`encoded`) decoded and cropped to `size` by the
  training transform (`train`) or the evaluation one. `workers` processes (0:
  2 threads of this one) compute them, a batch each at a time; at most
  `prefetch` batches per worker wait ahead."""
  if not flags.FLAGS.is_parsed():  # grain reads its absl flags; a library caller has none
    flags.FLAGS.mark_as_parsed()
  # One element a batch: grain's per-element work, paid once per batch.
  dataset = grain.MapDataset.source(rows.reshape(-1, rows_per_batch, rows.shape[-1])).map(
      _LoadBatch(images, encoded, size, seed, train))
  if workers:
    stream = dataset.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
    stream = stream.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=prefetch))
  else:
    stream = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                                       prefetch_buffer_size=prefetch))
  iterator = iter(stream)
  try:
    # As many batches as there are, never asking past the last: grain leaves
    # one shared memory block behind at the end of its stream.
    for _ in range(len(dataset)):
      try:
        batch = next(iterator)
      except RuntimeError as e:
        if 'terminated unexpectedly' in str(e):
          raise InputWorkerError(f'{str(e).splitlines()[0]} Rerun the same command to '
                                 'resume from the last checkpoint.') from None
        raise
      yield batch
  finally:  # stops the workers and frees their shared memory, also when left early
    iterator.close()
