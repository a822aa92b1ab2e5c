"""The host stream's training images/s against the PyTorch anchors' pipeline,
on the same real-photo JPEGs with the same worker count; and how long a
training step fed by the stream waits for it.

  python -m kdjax.bench --input --input_workers=1    # side by side, one core each
  python -m kdjax.bench --input --input_workers=1 --width=8 --input_image_size=64 \
      --input_batch_size=32                          # training's wait, at a CPU's size

Also timed: tf.data, the host pipeline grain was chosen over.

The JPEGs are `count` random 500 x 375 crops (ImageNet's typical size) of
scikit-learn's two bundled photos, randomly flipped, at quality 90, written
in ImageFolder's layout. The anchors' pipeline is torchvision's ImageFolder +
RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize in a
DataLoader (torch and torchvision: benchmark-only dependencies).
"""
import os
import tempfile
import time
from typing import Any, Dict

import cv2
import jax
import numpy as np

from kdjax import build as build_lib
from kdjax import steps
from kdjax.data import arrays
from kdjax.data import feeds
from kdjax.data import imagenet
from kdjax.data import stream

BATCH = 64


def write_jpegs(folder: str, count: int, seed: int = 0) -> list:
  """`count` JPEGs in folder/<class>/ (4 classes); returns their bytes."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  photos = datasets.load_sample_images().images
  rng = np.random.default_rng(seed)
  encoded = []
  for i in range(count):
    photo = photos[i % len(photos)]
    top, left = rng.integers(0, photo.shape[0] - 375), rng.integers(0, photo.shape[1] - 500)
    crop = photo[top:top + 375, left:left + 500]
    crop = crop[:, ::-1] if rng.random() < 0.5 else crop
    ok, jpeg = cv2.imencode('.jpg', np.ascontiguousarray(crop[..., ::-1]),
                            [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    os.makedirs(os.path.join(folder, f'class{i % 4}'), exist_ok=True)
    with open(os.path.join(folder, f'class{i % 4}', f'{i:05d}.jpg'), 'wb') as f:
      f.write(jpeg.tobytes())
    encoded.append(jpeg.tobytes())
  return encoded


def _rate(batches, images_per_batch: int) -> float:
  """Images/s after the first batch (worker start-up and warm-up)."""
  next(batches)
  start, count = time.perf_counter(), 0
  for _ in batches:
    count += images_per_batch
  return count / (time.perf_counter() - start)


def stream_rate(jpegs: list, workers: int, epochs: int = 2) -> float:
  rows = np.stack([np.tile(np.arange(len(jpegs)), epochs),
                   np.repeat(np.arange(epochs), len(jpegs)),
                   np.tile(np.arange(len(jpegs)), epochs)], -1)
  rows = rows[:len(rows) // BATCH * BATCH]
  return _rate(stream.batches(jpegs, rows, BATCH, encoded=True, size=224, seed=0, train=True,
                              workers=workers, prefetch=2), BATCH)


def tf_data_rate(jpegs: list, workers: int, epochs: int = 2) -> float:
  """The candidate grain was chosen over: tf.data as google/flax's
  examples/imagenet builds it (decode_and_crop_jpeg of a
  sample_distorted_bounding_box with RandomResizedCrop's ranges, a bilinear
  resize, a flip), on `workers` threads of TensorFlow's pools."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  threads = max(workers, 1)
  try:
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
  except RuntimeError:  # TensorFlow ran already in this process: its pools are as they are
    pass

  def crop(encoded):
    shape = tf.io.extract_jpeg_shape(encoded)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape, tf.zeros([0, 0, 4]), area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.image.resize(image, (224, 224), antialias=True)
    return tf.cast(tf.image.random_flip_left_right(image), tf.uint8)

  dataset = tf.data.Dataset.from_tensor_slices(jpegs).repeat(epochs).map(
      crop, num_parallel_calls=threads).batch(BATCH, drop_remainder=True).prefetch(2)
  return _rate(iter(dataset.as_numpy_iterator()), BATCH)


def torchvision_rate(folder: str, workers: int, epochs: int = 2) -> float:
  """The anchors' pipeline on `folder`: images/s over `epochs` epochs."""
  import torch  # pylint: disable=g-import-not-at-top
  from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)
  torchvision = torch_models.torchvision()
  datasets, transforms = torchvision.datasets, torchvision.transforms
  torch.set_num_threads(1)
  transform = transforms.Compose([
      transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
      transforms.ToTensor(), transforms.Normalize(imagenet.MEAN, imagenet.STD)])
  loader = torch.utils.data.DataLoader(
      datasets.ImageFolder(folder, transform), batch_size=BATCH, shuffle=True,
      num_workers=workers, drop_last=True, persistent_workers=workers > 0)
  def batches():
    for _ in range(epochs):
      yield from loader
  return _rate(batches(), BATCH)


def stream_wait_fraction(jpegs: list, workers: int, width: int = 64, image_size: int = 224,
                         batch_size: int = 256, num_steps: int = 20) -> Dict[str, float]:
  """A ResNet18 of `width` training `num_steps` steps on the stream's
  `image_size` crops of `jpegs` (cycled) through the loop's feed, on one
  device, in its platform's dtype: the fraction of the time after the first
  2 steps (compilation, start-up) that it waits for the stream (0:
  device-bound), and its steps/s."""
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.update(width=width, batch_size=batch_size, image_size=image_size, mixup_alpha=0.0,
                steps_per_call=1)
  labels = np.arange(len(jpegs), dtype=np.int32) % 4
  dataset = arrays.Dataset(imagenet.NAME, jpegs, labels, jpegs, labels, 1000, imagenet.MEAN,
                           imagenet.STD, (image_size, image_size, 3), encoded=True)
  devices = jax.local_devices()[:1]
  run = build_lib.build(config, dataset.info, num_steps, devices)
  feed = feeds.make(dataset, devices, workers=workers)
  state, key = steps.replicate((run.init_state(jax.random.PRNGKey(0)),
                                jax.random.PRNGKey(0)), devices)
  order = (np.arange(num_steps * batch_size) % len(jpegs)).astype(np.int32).reshape(
      num_steps, 1, 1, batch_size)
  lams = np.ones((1, 1), np.float32)
  batches = feed.train_calls(order, 0)
  waited, start = 0.0, None
  for call in range(num_steps):
    before = time.perf_counter()
    batch = next(batches)
    if call == 2:
      jax.block_until_ready(state)
      start, waited = time.perf_counter(), 0.0
    elif start is not None:
      waited += time.perf_counter() - before
    state, metrics = run.train_steps(state, *feed.train, batch, lams, key, {})
  jax.block_until_ready(metrics)
  total = time.perf_counter() - start
  return {'wait_fraction': waited / total, 'steps_per_s': (num_steps - 3) / total,
          'width': width, 'image_size': image_size, 'batch_size': batch_size,
          'dtype': run.dtype, 'device_kind': devices[0].device_kind}


def run(count: int = 768, workers: int = 1, **training) -> Dict[str, Any]:
  """Every pipeline's images/s (and per worker) on `count` JPEGs, and
  stream_wait_fraction with the `training` settings it takes."""
  with tempfile.TemporaryDirectory() as folder:
    jpegs = write_jpegs(folder, count)
    kdjax_rate = stream_rate(jpegs, workers)
    candidate_rate = tf_data_rate(jpegs, workers)
    try:
      anchor_rate = torchvision_rate(folder, workers)
    except ImportError as e:
      anchor_rate = None
      skipped = f'torchvision is not installed ({e}); pip install torchvision'
    result = {
        'jpegs': count, 'mean_jpeg_kib': float(np.mean([len(j) for j in jpegs]) / 1024),
        'workers': workers, 'cpu_count': len(os.sched_getaffinity(0)),
        'stream_images_per_s': kdjax_rate, 'stream_images_per_s_per_worker':
            kdjax_rate / max(workers, 1),
        'tf_data_images_per_s': candidate_rate,
        'torchvision_images_per_s': anchor_rate,
        'stream_over_torchvision': anchor_rate and kdjax_rate / anchor_rate,
        'training_on_the_stream': stream_wait_fraction(jpegs, workers, **training),
    }
    if anchor_rate is None:
      result['torchvision_skipped'] = skipped
    return result


def format_table(report: Dict[str, Any]) -> str:
  number = lambda x, fmt: '-' if x is None else format(x, fmt)
  training = report['training_on_the_stream']
  return '\n'.join([
      f"{report['jpegs']} JPEGs of 500 x 375 ({report['mean_jpeg_kib']:.0f} KiB mean), "
      f"{report['workers']} worker(s) each, {report['cpu_count']} cores:",
      f"  kdjax stream      {report['stream_images_per_s']:8.0f} images/s "
      f"({report['stream_images_per_s_per_worker']:.0f} per worker)",
      f"  tf.data           {report['tf_data_images_per_s']:8.0f} images/s (the candidate)",
      f"  torchvision       {number(report['torchvision_images_per_s'], '8.0f')} images/s",
      f"  ratio             {number(report['stream_over_torchvision'], '8.2f')}",
      f"  training on the stream (ResNet18 width {training['width']}, "
      f"{training['image_size']} px, batch {training['batch_size']}, {training['dtype']}, "
      f"{training['device_kind']}): waits {100 * training['wait_fraction']:.1f} % of "
      f"{training['steps_per_s']:.2f} steps/s"])
