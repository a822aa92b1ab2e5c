"""The host stream and its transforms: torchvision's crop geometry, positions
that match the device steps', the same rows as device-resident, a dead worker."""
import math
import multiprocessing
import os
import signal
import time

import cv2
import jax
import numpy as np
from PIL import Image
import pytest
from sklearn import datasets
import torch

from kdjax import errors
from kdjax import order
from kdjax import steps
from kdjax import train
from kdjax.data import arrays
from kdjax.data import feeds
from kdjax.data import stream
from kdjax.data import transforms


class SlowImages:
  """Arrays read slowly, so a worker is still busy when the test kills it."""

  def __init__(self, images):
    self._images = images

  def __len__(self):
    return len(self._images)

  def __getitem__(self, index):
    time.sleep(0.02)
    return self._images[index]


def _photo():
  return datasets.load_sample_images().images[0]  # RGB, 427 x 640


def _torchvision_box(height, width, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """torchvision's RandomResizedCrop.get_params (transforms.py), transcribed."""
  area = height * width
  log_ratio = torch.log(torch.tensor(ratio))
  for _ in range(10):
    target_area = area * torch.empty(1).uniform_(scale[0], scale[1]).item()
    aspect_ratio = math.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1]).item())
    w = int(round(math.sqrt(target_area * aspect_ratio)))
    h = int(round(math.sqrt(target_area / aspect_ratio)))
    if 0 < w <= width and 0 < h <= height:
      i = torch.randint(0, height - h + 1, size=(1,)).item()
      j = torch.randint(0, width - w + 1, size=(1,)).item()
      return i, j, h, w
  raise AssertionError('a 375 x 500 image always fits within 10 draws here')


def test_random_resized_crop_boxes_follow_torchvision():
  rng = np.random.default_rng(0)
  boxes = np.array([transforms.random_resized_crop_box(rng, 375, 500) for _ in range(4000)])
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all()
  assert (top + h <= 375).all() and (left + w <= 500).all()
  area, aspect = h * w / (375 * 500), w / h
  assert area.min() > 0.075 and area.max() <= 1.0
  assert aspect.min() > 0.74 and aspect.max() < 1.35
  # The same distribution as torchvision's get_params, transcribed on torch's RNG.
  torch.manual_seed(0)
  want = np.array([_torchvision_box(375, 500) for _ in range(4000)])
  for got_x, want_x in ((area, want[:, 2] * want[:, 3] / (375 * 500)),
                        (aspect, want[:, 3] / want[:, 2]), (top / 375, want[:, 0] / 375)):
    np.testing.assert_allclose(np.quantile(got_x, [0.1, 0.25, 0.5, 0.75, 0.9]),
                               np.quantile(want_x, [0.1, 0.25, 0.5, 0.75, 0.9]), atol=0.03)
  # An image far outside the ratio range falls back to the largest centred box within it.
  assert transforms.random_resized_crop_box(np.random.default_rng(0), 10, 1000) == (
      0, 493, 10, 13)


def test_eval_image_is_torchvisions_resize_and_center_crop():
  photo = _photo()
  ok, encoded = cv2.imencode('.png', photo[..., ::-1])  # lossless: the same pixels
  assert ok
  got = transforms.eval_image(encoded.tobytes(), 224)
  # torchvision's Resize(256) + CenterCrop(224) on a PIL image.
  resized = Image.fromarray(photo).resize((383, 256), Image.BILINEAR)  # 640 x 427 -> 383 x 256
  want = np.asarray(resized)[16:240, 80:304]
  assert got.shape == want.shape == (224, 224, 3)
  # Area interpolation against PIL's anti-aliased bilinear: the same picture.
  assert np.abs(got.astype(int) - want).mean() < 2.5


def test_train_image_is_a_function_of_its_generator():
  ok, encoded = cv2.imencode('.jpg', _photo()[..., ::-1])
  assert ok
  draw = lambda seed: transforms.train_image(encoded.tobytes(), np.random.default_rng(seed),
                                             64)
  np.testing.assert_array_equal(draw([0, 5, 3]), draw([0, 5, 3]))
  assert not np.array_equal(draw([0, 5, 3]), draw([0, 5, 4]))
  assert draw([1, 2]).shape == (64, 64, 3) and draw([1, 2]).dtype == np.uint8


def test_a_damaged_image_is_named_as_such():
  with pytest.raises(transforms.UndecodableImageError):
    transforms.decode(b'not an image')


def test_host_positions_are_the_device_steps_positions():
  devices = jax.devices()
  layout = feeds.Layout(tuple(range(len(devices))), len(devices), groups=2)
  on_devices = jax.pmap(lambda _: steps.global_positions(6, 2), axis_name=steps.AXIS)(
      np.zeros(len(devices)))
  np.testing.assert_array_equal(layout.positions(6), on_devices)
  # A process feeding devices 1 and 3 of 4 gets their rows' positions.
  np.testing.assert_array_equal(feeds.Layout((1, 3), 4, 2).positions(6), np.asarray(on_devices)[[1, 3]])


def _digits():
  return arrays.load_dataset('digits')


def test_the_stream_sends_the_rows_the_resident_arrays_gather():
  dataset = _digits()
  devices = jax.devices()
  rows = order.epoch_order(0, 1, len(dataset.train_labels), 64, len(devices), 'carry')
  calls = rows.reshape(-1, 2, len(devices), rows.shape[-1]).transpose(0, 2, 1, 3)[:3]
  feed = feeds.make(dataset, devices, input_pipeline='stream', workers=0)
  assert isinstance(feed, feeds.Stream) and feed.train[0] is None
  for call, batch in zip(calls, feed.train_calls(calls, first_step=22)):
    np.testing.assert_array_equal(np.asarray(batch['index']), call)
    np.testing.assert_array_equal(np.asarray(batch['image']), dataset.train_images[call])
  indices = np.arange(24).reshape(2, len(devices), -1)
  for want, batch in zip(indices, feed.test_batches(indices)):
    np.testing.assert_array_equal(np.asarray(batch['image']), dataset.test_images[want])


class CountedImages:
  """Arrays that count their reads."""

  def __init__(self, images):
    self.images, self.reads = images, 0

  def __len__(self):
    return len(self.images)

  def __getitem__(self, index):
    self.reads += 1
    return self.images[index]


def test_the_stream_holds_a_bounded_number_of_batches_ahead():
  images = CountedImages(np.zeros((4000, 4, 4, 3), np.uint8))
  rows = np.stack([np.arange(4000), np.zeros(4000, int), np.zeros(4000, int)], -1)
  batches = stream.batches(images, rows, 10, encoded=False, size=4, seed=0, train=True,
                           workers=0, prefetch=3)
  for taken in range(1, 6):
    next(batches)
    time.sleep(0.2)  # a slow step: the workers run ahead as far as they may
    # The batches taken, 3 waiting, and one being made per thread (2), at most.
    assert taken * 10 <= images.reads <= (taken + 3 + 2) * 10
  batches.close()


def test_a_dead_worker_stops_the_stream_with_a_clear_error():
  images = SlowImages(np.zeros((400, 4, 4, 3), np.uint8))
  rows = np.stack([np.arange(400), np.zeros(400, int), np.zeros(400, int)], -1)
  batches = stream.batches(images, rows, 8, encoded=False, size=4, seed=0, train=True,
                           workers=1, prefetch=1)
  assert next(batches).shape == (8, 4, 4, 3)
  (worker,) = [p for p in multiprocessing.active_children() if p.pid]
  os.kill(worker.pid, signal.SIGKILL)
  with pytest.raises(stream.InputWorkerError, match='terminated unexpectedly'):
    for _ in batches:
      pass


def test_the_loop_turns_a_dead_worker_into_a_line_that_says_how_to_resume():
  class Manager:
    def latest_step(self):
      return 40

  def dead():
    raise stream.InputWorkerError('Worker process was terminated unexpectedly. Rerun the '
                                  'same command to resume from the last checkpoint.')
    yield  # pylint: disable=unreachable

  with pytest.raises(errors.InputError, match=r'stopped at step 42 \(the last checkpoint: '
                                              r'step 40\): .* Rerun the same command'):
    train._next_batch(dead(), 42, Manager())  # pylint: disable=protected-access
