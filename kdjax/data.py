"""Datasets as uint8 arrays, and augmentation as pure functions of (images, keys).

Each split is loaded once into host memory and then kept on the devices; the
train step gathers its batch by index and augments it on the device, so the
host only sends a few hundred int32 indices per step.
"""
import dataclasses
import logging
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'
DATASETS = ('cifar100', 'digits')
PAD = 4  # pixels of zero padding before the random crop, as in RandomCrop(32, 4)


class DatasetUnavailableError(RuntimeError):
  """The dataset could not be loaded or prepared; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits as uint8 NHWC images and int32 labels, plus normalization."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  mean: Tuple[float, ...]  # per channel, of the train split in [0, 1]
  std: Tuple[float, ...]


def load_dataset(name: str, data_dir: str = '', manual_dir: str = '') -> Dataset:
  """Loads a dataset by name; `data_dir`/`manual_dir` are TFDS's (see README)."""
  if name == 'cifar100':
    train, test, num_classes = _load_tfds('cifar100', data_dir, manual_dir)
  elif name == 'digits':
    train, test, num_classes = _load_digits()
  else:
    raise ValueError(f'Unknown dataset {name!r}. Known datasets: {list(DATASETS)}. '
                     'Set --config.dataset to one of them.')
  pixels = train[0].reshape(-1, train[0].shape[-1]) / 255.0
  return Dataset(name, *train, *test, num_classes,
                 tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist()))


def _load_tfds(name, data_dir, manual_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # Random-access array_record files read without TensorFlow at training time.
  builder = tfds.builder(name, data_dir=data_dir or None, file_format='array_record')
  try:
    if not builder.is_prepared():
      logging.info('Preparing %s with TFDS in %s (a one-time download and '
                   'conversion).', name, builder.data_dir)
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir or None))
    splits = [_read_split(builder.as_data_source(split=s)) for s in ('train', 'test')]
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
        f'Could not load {name} with tensorflow-datasets into '
        f'{builder.data_dir}: {type(e).__name__}: {e}\n'
        f'Without internet access, either (a) download {CIFAR100_URL} on a '
        'connected machine, put the file unchanged in a folder here and pass '
        '--config.manual_dir=FOLDER, or (b) prepare the data on a connected '
        f"machine with `python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', file_format='array_record').download_and_prepare()\"`, "
        'copy its ~/tensorflow_datasets folder here and pass '
        '--config.data_dir=FOLDER.') from e
  return splits[0], splits[1], builder.info.features['label'].num_classes


def _read_split(source):
  examples = [source[i] for i in range(len(source))]
  images = np.stack([ex['image'] for ex in examples]).astype(np.uint8)
  labels = np.asarray([ex['label'] for ex in examples], np.int32)
  return images, labels


def _load_digits(image_size=32, num_test=360):
  """scikit-learn's bundled 8x8 digits, upscaled to image_size, fixed split."""
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  scale = image_size // images.shape[1]
  images = images.repeat(scale, axis=1).repeat(scale, axis=2)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int32)
  order = np.random.default_rng(0).permutation(len(labels))
  test, train = order[:num_test], order[num_test:]
  return (images[train], labels[train]), (images[test], labels[test]), 10


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of the training set in `epoch`: a function of (seed, epoch) only."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def example_keys(key: jax.Array, positions: jax.Array) -> jax.Array:
  """One key per example from its position in the global batch.

  Keys depend on the global position, not on the device, so an augmented
  batch is the same whatever number of devices it is split over.
  """
  return jax.vmap(jax.random.fold_in, (None, 0))(key, positions)


def _crop_and_flip(image, key):
  crop_key, flip_key = jax.random.split(key)
  height, width, channels = image.shape
  padded = jnp.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
  top, left = jax.random.randint(crop_key, (2,), 0, 2 * PAD + 1)
  image = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
  return jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)


def augment(images: jax.Array, keys: jax.Array) -> jax.Array:
  """Zero-pad 4 + random crop + random horizontal flip, one key per image."""
  return jax.vmap(_crop_and_flip)(images, keys)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 pixels -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def normalize(images: jax.Array, mean, std) -> jax.Array:
  return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


def mixup(batch, partner, key: jax.Array, alpha: float):
  """Mixup (Zhang et al., 2018): lam * batch + (1 - lam) * partner, leaf by leaf.

  `batch` and `partner` are matching pytrees (pixels, target distributions);
  one lam ~ Beta(alpha, alpha) is drawn from `key` for the whole batch, as in the
  reference implementation.
  """
  lam = jax.random.beta(key, alpha, alpha)
  return jax.tree.map(lambda a, b: lam * a + (1 - lam) * b, batch, partner)
