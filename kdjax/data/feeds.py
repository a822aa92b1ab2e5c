"""Two ways to fetch the rows that the data order names, behind one interface.

A feed gives the train and eval steps their data in two parts: `train` and
`test`, (images, labels) kept on this process's devices (images None when the
stream sends them), and, per mapped call, a batch: the rows' int32 indices
[devices, steps, rows] (resident), or {'index': ..., 'image': uint8 [devices,
steps, rows, H, W, C]} (stream). The labels stay on the devices either way:
the methods that keep something per training example read them. The loop
does not know which feed it has; its log line names it (`description`).
"""
import contextlib
import dataclasses
import os
from typing import Any, Iterator, Optional, Sequence, Tuple

from flax import jax_utils
import numpy as np

from kdjax.data import arrays
from kdjax.data import stream

PIPELINES = ('auto', 'device', 'stream')  # config.input_pipeline


def pipeline(name: str, info: arrays.DatasetInfo) -> str:
  """A PIPELINES name resolved: 'auto' is the stream for encoded images."""
  if name != 'auto':
    return name
  return 'stream' if info.encoded else 'device'


class Resident:
  """Both splits on every device of this process; batches are indices.
  `train` and `test` are (uint8 images, int32 labels) arrays."""

  description = 'both splits kept on each device'

  def __init__(self, train, test, devices: Sequence[Any]):
    self.train = jax_utils.replicate(train, devices)
    self.test = jax_utils.replicate(test, devices)

  def train_calls(self, order: np.ndarray, first_step: int) -> Iterator[Any]:
    """The batches of `order`'s calls ([calls, devices, steps, rows]), the
    first of which runs step `first_step`."""
    del first_step
    return iter(order)

  def test_batches(self, indices: np.ndarray) -> Iterator[Any]:
    return iter(indices)  # [batches, devices, rows]


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where this process's rows sit in each step's global batch: `local`, its
  devices' positions among all `num_devices`; each device's rows are
  `groups` groups of equal shares (order.epoch_order's layout)."""
  local: Tuple[int, ...]
  num_devices: int
  groups: int = 1

  def positions(self, rows: int) -> np.ndarray:
    """[local devices, rows] positions in the global batch (steps.global_positions)."""
    share = rows // self.groups
    return np.array([[g * share * self.num_devices + d * share + j
                      for g in range(self.groups) for j in range(share)]
                     for d in self.local])


class Stream:
  """Host workers read each batch's rows and send them ahead of their step;
  encoded training images get the training transform if `augment`, else
  the evaluation one."""

  def __init__(self, dataset: arrays.Dataset, devices: Sequence[Any], layout: Layout, *,
               augment: bool, seed: int, workers: int, prefetch: int):
    self._dataset, self._devices, self._layout = dataset, devices, layout
    self._augment = augment
    # Worker processes; 0: threads (arrays only need a gather).
    self.workers = workers or (len(os.sched_getaffinity(0)) if dataset.encoded else 0)
    self.description = (f'streamed by {self.workers} host worker(s)' if self.workers
                        else 'streamed by host threads')
    self._options = dict(encoded=dataset.encoded, size=dataset.info.image_shape[0],
                         seed=seed, prefetch=prefetch, workers=self.workers)
    self.train = (None, jax_utils.replicate(dataset.train_labels, devices))
    self.test = (None, jax_utils.replicate(dataset.test_labels, devices))

  def _on_devices(self, batches: Iterator[dict]) -> Iterator[dict]:
    # The next batch is copied to the devices while the current call runs.
    return jax_utils.prefetch_to_device(batches, 2, self._devices)

  def train_calls(self, order: np.ndarray, first_step: int) -> Iterator[dict]:
    calls, devices, per_call, rows = order.shape
    steps = first_step + np.arange(calls * per_call).reshape(calls, per_call)
    positions = self._layout.positions(rows)
    # Rows as the stream reads them, a step's rows (every local device's) at a time.
    table = np.stack(np.broadcast_arrays(
        order.transpose(0, 2, 1, 3), steps[:, :, None, None], positions[None, None]),
                     -1).reshape(-1, 3)
    images = stream.batches(self._dataset.train_images, table, devices * rows,
                            train=self._augment, **self._options)

    def calls_of(images):
      with contextlib.closing(images):
        for call in order:
          step_images = [next(images).reshape(devices, rows, *self._dataset.info.image_shape)
                         for _ in range(per_call)]
          yield {'index': call, 'image': np.stack(step_images, 1)}
    return self._on_devices(calls_of(images))

  def test_batches(self, indices: np.ndarray) -> Iterator[dict]:
    num_batches, devices, rows = indices.shape
    table = np.stack([indices.reshape(-1), np.zeros(indices.size, np.int64),
                      np.zeros(indices.size, np.int64)], -1)
    images = stream.batches(self._dataset.test_images, table, devices * rows, train=False,
                            **self._options)

    def batches_of(images):
      with contextlib.closing(images):
        for batch, image in zip(indices, images):
          yield {'index': batch, 'image': image.reshape(devices, rows, *image.shape[1:])}
    return self._on_devices(batches_of(images))


def make(dataset: arrays.Dataset, devices: Sequence[Any], layout: Optional[Layout] = None,
         *, input_pipeline: str = 'auto', augment: bool = True, seed: int = 0,
         workers: int = 0, prefetch: int = 2):
  """The feed `input_pipeline` (PIPELINES) names for `dataset` on this
  process's `devices`; `layout`: where their rows sit (default: every device
  is local); the rest are Stream's."""
  if pipeline(input_pipeline, dataset.info) == 'device':
    return Resident((dataset.train_images, dataset.train_labels),
                    (dataset.test_images, dataset.test_labels), devices)
  return Stream(dataset, devices, layout or Layout(tuple(range(len(devices))), len(devices)),
                augment=augment, seed=seed, workers=workers, prefetch=prefetch)
