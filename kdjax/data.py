"""Datasets as uint8 arrays, and augmentation as pure functions of (images, keys).

Each split is loaded once into host memory and then kept on the devices; the
train step gathers its batch by index and augments it on the device, so the
host only sends a few hundred int32 indices per step.
"""
import dataclasses
import logging
import os
from typing import Callable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from kdjax import errors
from kdjax import idx

CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'
# TFDS's fashion_mnist downloads its four files from here.
FASHION_MNIST_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
# Where Debian's package dataset-fashion-mnist installs the four IDX files.
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
DATASETS = ('cifar100', 'fashion_mnist', 'digits', 'synthetic')
PAD = 4  # pixels of zero padding before the random crop, as in RandomCrop(32, 4)
# The study's Normalize constants (its src/data.py): CIFAR-100's train-split
# per-channel mean and std. Other datasets use their own train split's.
CIFAR100_MEAN = (0.5070751592371323, 0.48654887331495095, 0.4409178433670343)
CIFAR100_STD = (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)
# Fashion-MNIST's train split (its files' content is pinned by idx.FASHION_MNIST).
FASHION_MNIST_MEAN = (0.2860405969887955,)
FASHION_MNIST_STD = (0.35302424451492254,)


class DatasetUnavailableError(errors.UserError, RuntimeError):
  """The dataset could not be loaded or prepared; the message says how to fix it."""


class UnknownDatasetError(errors.UserError, ValueError):
  """A dataset name kdjax does not know."""


def probe(url: str, timeout_s: float = 20) -> None:
  """One quick request to `url`, raising what requests raises if its host does
  not answer: TFDS's download manager retries an unreachable host for minutes
  (3 min 26 s measured) behind a 0 % progress bar before it gives up."""
  import requests  # pylint: disable=g-import-not-at-top  (TFDS's; only downloads need it)
  requests.head(url, timeout=timeout_s, allow_redirects=True)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know of a dataset."""
  name: str
  num_classes: int
  image_shape: Tuple[int, ...]  # (height, width, channels)
  mean: Tuple[float, ...]  # per channel, of pixels in [0, 1]
  std: Tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits as uint8 NHWC images and int32 labels, plus normalization."""
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  mean: Tuple[float, ...]  # per channel, of pixels in [0, 1]
  std: Tuple[float, ...]

  @property
  def info(self) -> DatasetInfo:
    return DatasetInfo(self.name, self.num_classes, self.train_images.shape[1:],
                       self.mean, self.std)


def describe(name: str) -> DatasetInfo:
  """What a model needs to know of dataset `name`, without downloading or
  preparing anything (scikit-learn's bundled digits are read for their mean)."""
  if name in ('cifar100', 'synthetic'):
    return DatasetInfo(name, 100, (32, 32, 3), CIFAR100_MEAN, CIFAR100_STD)
  if name == 'fashion_mnist':
    return DatasetInfo(name, 10, (28, 28, 1), FASHION_MNIST_MEAN, FASHION_MNIST_STD)
  return load_dataset(name).info


def open_dataset(name: str, data_dir: str = '', manual_dir: str = '') -> Callable[[], Dataset]:
  """A loader of dataset `name`, once everything about it that needs neither a
  download nor a write was checked: an unknown name, and IDX files (which are
  read and checked here, so the loader only hands them over). A run opens its
  dataset before it writes anything, and loads it once its other checks pass.
  `data_dir` and `manual_dir` are TFDS's (docs/data.md); fashion_mnist reads the
  IDX files in `manual_dir`, else TFDS's prepared copy, else FASHION_MNIST_DIR
  when it exists, else downloads through TFDS."""
  if name == 'cifar100':
    return lambda: Dataset(name, *_load_tfds(name, CIFAR100_URL, data_dir, manual_dir),
                           CIFAR100_MEAN, CIFAR100_STD)
  if name == 'fashion_mnist':
    folder = manual_dir or (FASHION_MNIST_DIR if os.path.isdir(FASHION_MNIST_DIR)
                            and not _tfds_prepared(name, data_dir) else '')
    if not folder:
      return lambda: Dataset(name, *_load_tfds(name, FASHION_MNIST_URL, data_dir, ''),
                             FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    logging.info('Reading %s from the IDX files in %s.', name, folder)
    try:
      train, test = idx.read_dataset(folder, idx.FASHION_MNIST)
    except idx.IdxError as e:
      raise DatasetUnavailableError(
          f'{e} Put the four original files in a folder and pass --config.manual_dir='
          f'FOLDER, or run `apt-get install --reinstall dataset-fashion-mnist` (Debian) '
          f'for {FASHION_MNIST_DIR}.') from None
    dataset = Dataset(name, *train, *test, 10, FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return lambda: dataset
  if name == 'digits':
    return _digits
  if name == 'synthetic':
    return lambda: Dataset(name, *_synthetic(), CIFAR100_MEAN, CIFAR100_STD)
  raise UnknownDatasetError(f'Unknown dataset {name!r}. Known datasets: {list(DATASETS)}. '
                            'Set --config.dataset to one of them.')


def load_dataset(name: str, data_dir: str = '', manual_dir: str = '') -> Dataset:
  """Loads a dataset by name (open_dataset's arguments), its examples in the
  order of its files (TFDS's prepared copies: in TFDS's own order)."""
  return open_dataset(name, data_dir, manual_dir)()


def _digits():
  train, test, num_classes = _load_digits()
  pixels = train[0].reshape(-1, train[0].shape[-1]) / 255.0
  return Dataset('digits', *train, *test, num_classes,
                 tuple(pixels.mean(0).tolist()), tuple(pixels.std(0).tolist()))


def _synthetic(num_train=50_000, num_test=10_000, num_classes=100):
  """Random images and labels of CIFAR-100's shapes and sizes, from seed 0: for
  timing a real-shape epoch (scripts/accelerator_check.sh) without the data."""
  rng = np.random.default_rng(0)
  def split(n):
    return (rng.integers(0, 256, (n, 32, 32, 3), np.uint8),
            rng.integers(0, num_classes, n).astype(np.int32))
  return (*split(num_train), *split(num_test), num_classes)


def _tfds_builder(name, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  # Random-access array_record files read without TensorFlow at training time.
  return tfds.builder(name, data_dir=data_dir or None, file_format='array_record')


def _tfds_prepared(name, data_dir):
  # Asked of a dataset it has not prepared, TFDS warns that its folder "has no
  # dataset_info.json": no news for a run that reads the IDX files instead.
  absl_logger = logging.getLogger('absl')
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    return _tfds_builder(name, data_dir).is_prepared()
  finally:
    absl_logger.setLevel(level)


def _load_tfds(name, url, data_dir, manual_dir):
  """(train images, train labels, test images, test labels, class count) of TFDS
  dataset `name`, prepared first if need be (downloading from `url`, which is
  probed first, unless `manual_dir` holds the download)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(name, data_dir)
  try:
    if not builder.is_prepared():
      if not manual_dir:
        probe(url)
      logging.info('Preparing %s with TFDS in %s (a one-time download and '
                   'conversion).', name, builder.data_dir)
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=manual_dir or None))
    splits = [_read_split(builder.as_data_source(split=s)) for s in ('train', 'test')]
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetUnavailableError(
        f'Could not load {name} with tensorflow-datasets into '
        f'{builder.data_dir}: {type(e).__name__}: {e}\n'
        f'Without internet access, either (a) {_OFFLINE_FILES[name].format(url=url)}, '
        'or (b) prepare the data on a connected '
        f"machine with `python -c \"import tensorflow_datasets as tfds; "
        f"tfds.builder('{name}', file_format='array_record').download_and_prepare()\"`, "
        'copy its ~/tensorflow_datasets folder here and pass '
        '--config.data_dir=FOLDER.') from e
  return (*splits[0], *splits[1], builder.info.features['label'].num_classes)


# What to download by hand for each TFDS dataset, and where to put it.
_OFFLINE_FILES = {
    'cifar100': 'download {url} on a connected machine, put the file unchanged in a '
                'folder here and pass --config.manual_dir=FOLDER',
    'fashion_mnist': f'`apt-get install dataset-fashion-mnist` (Debian) puts the four IDX '
                     f'files in {FASHION_MNIST_DIR}, which kdjax reads by itself; or '
                     'download the four .gz files of {url} on a connected machine into a '
                     'folder here and pass --config.manual_dir=FOLDER',
}


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


# Rotations compute each pixel's source in fixed point: cos and sin as integers
# of FIXED = 2**20 units and pixel offsets from the centre in half pixels, so
# the source pixels are integer arithmetic, exactly the same whatever XLA fuses
# or however many examples a device holds (floats are not: a source that lands
# within a rounding error of a pixel border can flip between compilations).
# Sources are within 1.5e-5 pixel of PIL's double-precision ones.
_FIXED = 2**20
# Augmentation draws angles in steps of ANGLE_STEP degrees, whose fixed-point
# cos and sin come from a table computed once in float64, not from the device's
# cos and sin, which may differ in their last bit between compilations.
ANGLE_STEP = 0.01


def _fixed_point(radians: np.ndarray) -> np.ndarray:
  return np.stack([np.round(np.cos(radians) * _FIXED),
                   np.round(np.sin(radians) * _FIXED)], -1).astype(np.int32)


def _rotate_one(image, cos_sin):
  """PIL's Image.rotate(degrees, resample=NEAREST, fillcolor=0), given the
  angle's fixed-point (cos, sin): each output pixel centre, rotated clockwise by
  the angle about the image centre, reads the input pixel it lands in
  (truncating, as PIL's nearest filter does), or 0 outside the image."""
  height, width = image.shape[:2]
  cos, sin = cos_sin[0], cos_sin[1]
  x = (2 * jnp.arange(width, dtype=jnp.int32) + 1 - width)[None, :]  # half pixels
  y = (2 * jnp.arange(height, dtype=jnp.int32) + 1 - height)[:, None]
  # source = (cos * x - sin * y) / 2 + width / 2, in units of 1 / (2 * FIXED).
  source_x = jnp.right_shift(cos * x - sin * y + width * _FIXED, 21)
  source_y = jnp.right_shift(sin * x + cos * y + height * _FIXED, 21)
  inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
  pixels = image[jnp.clip(source_y, 0, height - 1), jnp.clip(source_x, 0, width - 1)]
  return jnp.where(inside[..., None], pixels, jnp.zeros((), image.dtype))


def rotate(images: jax.Array, degrees: jax.Array) -> jax.Array:
  """[N, H, W, C] images rotated counter-clockwise by [N] angles in degrees about
  their centres, nearest neighbour, zero fill: torchvision's RandomRotation on PIL
  images. A gather, so it runs on the device inside a jitted step."""
  radians = jnp.deg2rad(jnp.asarray(degrees, jnp.float32))
  cos_sin = jnp.stack([jnp.round(jnp.cos(radians) * _FIXED),
                       jnp.round(jnp.sin(radians) * _FIXED)], -1).astype(jnp.int32)
  return jax.vmap(_rotate_one)(images, cos_sin)


def _augment_one(image, key, rotation_degrees):
  crop_key, flip_key, rotate_key = jax.random.split(key, 3)
  height, width, channels = image.shape
  padded = jnp.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
  top, left = jax.random.randint(crop_key, (2,), 0, 2 * PAD + 1)
  image = jax.lax.dynamic_slice(padded, (top, left, 0), (height, width, channels))
  image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
  if rotation_degrees:
    steps = int(round(rotation_degrees / ANGLE_STEP))
    table = _fixed_point(np.deg2rad(np.arange(-steps, steps + 1) * ANGLE_STEP))
    index = jax.random.randint(rotate_key, (), 0, 2 * steps + 1)
    image = _rotate_one(image, jnp.asarray(table)[index])
  return image


def augment(images: jax.Array, keys: jax.Array, rotation_degrees: float = 0.0) -> jax.Array:
  """The study's training transform, one key per image: zero-pad 4 + random
  crop, random horizontal flip, then (if `rotation_degrees`) a rotation by an
  angle uniform over [-rotation_degrees, rotation_degrees] in steps of
  ANGLE_STEP degrees."""
  return jax.vmap(_augment_one, (0, 0, None))(images, keys, rotation_degrees)


def to_float(images: jax.Array) -> jax.Array:
  """uint8 pixels -> float32 in [0, 1]."""
  return images.astype(jnp.float32) / 255.0


def normalize(images: jax.Array, mean, std) -> jax.Array:
  return (images - jnp.asarray(mean, images.dtype)) / jnp.asarray(std, images.dtype)


def mixup_lambdas(seed: int, first_step: int, num_steps: int, alpha: float) -> np.ndarray:
  """Mixup's lam ~ Beta(alpha, alpha) of steps first_step, ..., first_step +
  num_steps - 1 (float32), one per batch as the reference implementation draws
  it; each a function of (seed, step) only, so a resumed run draws the same.
  Drawn on the host: jax.random.beta's rejection sampler is a loop whose trip
  count depends on the draw, which XLA:GPU runs by copying each loop condition
  to the host. Alpha 0 (no mixup) gives 1s."""
  if not alpha:
    return np.ones(num_steps, np.float32)
  return np.asarray([np.random.default_rng([seed, step]).beta(alpha, alpha)
                     for step in range(first_step, first_step + num_steps)], np.float32)


def mixup(batch, partner, lam: jax.Array):
  """Mixup (Zhang et al., 2018): lam * batch + (1 - lam) * partner, leaf by leaf;
  `batch` and `partner` are matching pytrees (pixels, target distributions)."""
  return jax.tree.map(lambda a, b: lam * a + (1 - lam) * b, batch, partner)
