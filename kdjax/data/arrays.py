"""Datasets by name: what a model needs to know of one, and its two splits.

The small datasets (CIFAR-100, Fashion-MNIST, digits, synthetic) load as uint8
arrays in host memory; ImageNet (data/imagenet.py) as random-access sources of
encoded JPEGs, decoded on the host as the stream reads them.
"""
import dataclasses
import logging
import os
from typing import Any, Callable, Optional, Tuple

import numpy as np

from kdjax import errors
from kdjax.data import idx

CIFAR100_URL = 'https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz'
# TFDS's fashion_mnist downloads its four files from here.
FASHION_MNIST_URL = 'http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
# Where Debian's package dataset-fashion-mnist installs the four IDX files.
FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
DATASETS = ('cifar100', 'fashion_mnist', 'digits', 'synthetic', 'imagenet2012')
IMAGENET = 'imagenet2012'
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
  # Whether its examples are encoded images of any size, which the host
  # decodes, crops and resizes to image_shape (ImageNet); else uint8 arrays
  # of image_shape, which the device crops and flips.
  encoded: bool = False


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Both splits and int32 labels, plus normalization. The images are uint8
  NHWC arrays, or (`encoded`) random-access sequences of encoded images."""
  name: str
  train_images: Any
  train_labels: np.ndarray
  test_images: Any
  test_labels: np.ndarray
  num_classes: int
  mean: Tuple[float, ...]  # per channel, of pixels in [0, 1]
  std: Tuple[float, ...]
  image_shape: Optional[Tuple[int, ...]] = None  # default: the arrays'
  encoded: bool = False

  def first_train(self, count: int) -> 'Dataset':
    """This dataset with only the first `count` training examples (TFDS's
    prepared splits are shuffled at preparation, so these mix the classes)."""
    return dataclasses.replace(self, train_images=self.train_images[:count],
                               train_labels=self.train_labels[:count])

  @property
  def info(self) -> DatasetInfo:
    return DatasetInfo(self.name, self.num_classes,
                       self.image_shape or self.train_images.shape[1:], self.mean, self.std,
                       self.encoded)


def describe(name: str, image_size: int = 224) -> DatasetInfo:
  """What a model needs to know of dataset `name`, without downloading or
  preparing anything (scikit-learn's bundled digits are read for their mean);
  `image_size` is the crop of the datasets of encoded images (ImageNet)."""
  if name == IMAGENET:
    from kdjax.data import imagenet  # pylint: disable=g-import-not-at-top  (it imports this module)
    return imagenet.describe(image_size)
  if name in ('cifar100', 'synthetic'):
    return DatasetInfo(name, 100, (32, 32, 3), CIFAR100_MEAN, CIFAR100_STD)
  if name == 'fashion_mnist':
    return DatasetInfo(name, 10, (28, 28, 1), FASHION_MNIST_MEAN, FASHION_MNIST_STD)
  return load_dataset(name).info


def open_dataset(name: str, data_dir: str = '', manual_dir: str = '',
                 image_size: int = 224) -> Callable[[], Dataset]:
  """A loader of dataset `name`, once everything about it that needs neither a
  download nor a write was checked: an unknown name, and IDX files (which are
  read and checked here, so the loader only hands them over). A run opens its
  dataset before it writes anything, and loads it once its other checks pass.
  `data_dir` and `manual_dir` are TFDS's (docs/data.md); fashion_mnist reads the
  IDX files in `manual_dir`, else TFDS's prepared copy, else FASHION_MNIST_DIR
  when it exists, else downloads through TFDS. ImageNet is prepared here, from
  the tars in `manual_dir`, if TFDS has not prepared it yet (data/imagenet.py);
  `image_size` is its crop."""
  if name == IMAGENET:
    from kdjax.data import imagenet  # pylint: disable=g-import-not-at-top  (it imports this module)
    return imagenet.open_splits(data_dir, manual_dir, image_size)
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


def load_dataset(name: str, data_dir: str = '', manual_dir: str = '',
                 image_size: int = 224) -> Dataset:
  """Loads a dataset by name (open_dataset's arguments), its examples in the
  order of its files (TFDS's prepared copies: in TFDS's own order)."""
  return open_dataset(name, data_dir, manual_dir, image_size)()


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
