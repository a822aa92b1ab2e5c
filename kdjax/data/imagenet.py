"""ImageNet-1k (ILSVRC 2012): prepared once by TFDS's own imagenet2012 builder
from the two ILSVRC tars, every JPEG checked as it is written; read back as
random-access sources of JPEG bytes that the host stream decodes.

  --config.dataset=imagenet2012 --config.manual_dir=DIR [--config.data_dir=DIR]

DIR holds ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar, as TFDS
documents; the test split ("validation" in TFDS) is ILSVRC's 50,000
validation images. TFDS writes array_record files, which are read by index
without TensorFlow.
"""
import io
import logging
import os
import tarfile
from typing import Callable, Optional, Sequence

import numpy as np
from PIL import Image

from kdjax.data import arrays

NAME = arrays.IMAGENET
NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet normalization
STD = (0.229, 0.224, 0.225)
TRAIN_TAR = 'ILSVRC2012_img_train.tar'
VAL_TAR = 'ILSVRC2012_img_val.tar'
TEST_TAR = 'ILSVRC2012_img_test.tar'  # optional; TFDS prepares it, kdjax reads none
SPLITS = {'train': 'train', 'test': 'validation'}  # kdjax's split: TFDS's
LABELS_FILE = 'kdjax-labels-{split}.npy'  # beside TFDS's files: each example's label


def describe(image_size: int) -> arrays.DatasetInfo:
  return arrays.DatasetInfo(NAME, NUM_CLASSES, (image_size, image_size, 3), MEAN, STD,
                            encoded=True)


def check_tar(path: str) -> None:
  """Refuses a missing tar, or one whose members do not all lie within the
  file (truncated): a walk over its headers, seeking past the data."""
  if not os.path.isfile(path):
    raise arrays.DatasetUnavailableError(
        f'{path} does not exist: --config.manual_dir must hold {TRAIN_TAR} and {VAL_TAR} '
        'as downloaded from image-net.org.')
  try:
    with tarfile.open(path, 'r:') as tar:
      members = 0
      for _ in tar:
        members += 1
  except (tarfile.TarError, OSError) as e:
    raise arrays.DatasetUnavailableError(
        f'{path} is damaged or truncated ({e}); download it again.') from None
  if not members:
    raise arrays.DatasetUnavailableError(f'{path} holds no files; download it again.')


def check_jpeg(name: str, encoded: bytes) -> None:
  """Refuses an image that PIL cannot decode to the end (truncated or
  corrupt): decoded at 1/8 scale (libjpeg's DCT scaling), which reads every
  byte of the entropy-coded data for a fraction of a full decode."""
  try:
    with Image.open(io.BytesIO(encoded)) as image:
      image.draft('RGB', (max(1, image.width // 8), max(1, image.height // 8)))
      image.load()
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise arrays.DatasetUnavailableError(
        f'{name} does not decode ({e}); replace the tar that holds it with an intact '
        'download.') from None


def _builder(data_dir: str, manual_dir: str = ''):
  """TFDS's imagenet2012 builder (same name, version and files), which, as it
  prepares from the tars in `manual_dir`, checks each example's JPEG
  (check_jpeg) and names a tar it cannot read to the end."""
  # TFDS and its builder are imported only where ImageNet is prepared or read.
  from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder  # pylint: disable=g-import-not-at-top

  class CheckedBuilder(imagenet2012_dataset_builder.Builder, skip_registration=True):
    name = NAME

    def _generate_examples(self, archive, validation_labels=None, **kwargs):
      tar = os.path.join(manual_dir, VAL_TAR if validation_labels else TRAIN_TAR
                         if kwargs.get('labels_exist', True) else TEST_TAR)
      examples = super()._generate_examples(archive, validation_labels, **kwargs)
      while True:
        try:
          key, example = next(examples)
        except StopIteration:
          return
        except (tarfile.TarError, OSError, EOFError) as e:
          raise arrays.DatasetUnavailableError(
              f'{tar} is damaged or truncated ({type(e).__name__}: {e}); download it '
              'again.') from None
        image = example['image']
        encoded = image if isinstance(image, bytes) else image.read()
        check_jpeg(f'{example["file_name"]} in {tar}', encoded)
        yield key, {**example, 'image': encoded}

  return CheckedBuilder(data_dir=data_dir or None, file_format='array_record')


def check_preparable(data_dir: str, manual_dir: str) -> bool:
  """Whether ImageNet is still to be prepared in `data_dir`; if so, refuses
  a `manual_dir` that lacks either tar or holds a truncated one (check_tar)."""
  builder = _builder(data_dir)
  if builder.is_prepared():
    return False
  if not manual_dir:
    raise arrays.DatasetUnavailableError(
        f'{NAME} is not prepared in {builder.data_dir}: download {TRAIN_TAR} and '
        f'{VAL_TAR} from image-net.org into a folder and pass --config.manual_dir=FOLDER (a '
        'one-time preparation), or pass the --config.data_dir of a prepared copy.')
  for tar in (TRAIN_TAR, VAL_TAR):
    check_tar(os.path.join(manual_dir, tar))
  return True


def prepare(data_dir: str, manual_dir: str) -> None:
  """Prepares ImageNet with TFDS in `data_dir` from the tars in `manual_dir`
  (a no-op once prepared): the tars are checked first (check_preparable),
  each JPEG as it is written; a refusal names the file and leaves nothing
  prepared."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not check_preparable(data_dir, manual_dir):
    return
  builder = _builder(data_dir, manual_dir)
  logging.info('Preparing %s with TFDS in %s from %s (a one-time conversion that reads '
               'and checks every JPEG).', NAME, builder.data_dir, manual_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir))


class JpegSource(Sequence):
  """One split's examples by index, as JPEG bytes (TFDS's array_record data
  source, the image left encoded): what the stream's workers read. Picklable,
  so each worker process opens the files for itself."""

  def __init__(self, data_dir: str, split: str, limit: Optional[int] = None):
    self._data_dir, self._split, self._limit = data_dir, split, limit
    self._source = None

  def _open(self):
    if self._source is None:
      import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
      self._source = _builder(self._data_dir).as_data_source(
          split=SPLITS[self._split], decoders={'image': tfds.decode.SkipDecoding()})
    return self._source

  def __len__(self):
    count = len(self._open())
    return count if self._limit is None else min(count, self._limit)

  def __getitem__(self, index) -> bytes:
    if isinstance(index, slice):  # only [:n], the first n examples, as arrays slice
      if index.start or index.step:
        raise ValueError(f'{type(self).__name__} slices as [:n] only, not {index}.')
      return JpegSource(self._data_dir, self._split, min(index.stop, len(self)))
    return self._open()[int(index)]['image']

  def labels(self) -> np.ndarray:
    """Every example's label, read once and kept beside TFDS's files (a pass
    over the split's records; ImageNet's train split takes minutes)."""
    directory = _builder(self._data_dir).data_dir
    path = os.path.join(directory, LABELS_FILE.format(split=self._split))
    if os.path.exists(path):
      return np.load(path)[:len(self)]
    source = self._open()
    logging.info('Reading the labels of %s %s (%d examples), once.', NAME, self._split,
                 len(source))
    labels = np.fromiter((source[i]['label'] for i in range(len(source))), np.int32,
                         len(source))
    try:  # written whole or not at all; a read-only data_dir reads them again
      np.save(path + '.tmp.npy', labels)
      os.replace(path + '.tmp.npy', path)
    except OSError as e:
      logging.warning('Could not keep the labels in %s (%s).', path, e)
    return labels[:len(self)]

  def __getstate__(self):
    return {**self.__dict__, '_source': None}  # each process opens the files itself


def open_splits(data_dir: str, manual_dir: str, image_size: int) -> Callable[[], arrays.Dataset]:
  """Prepares ImageNet if need be (process 0 of several; the others check
  the tars too, then wait, so `data_dir` must be one that every host sees),
  then returns a loader of its splits as JpegSources and labels."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    prepare(data_dir, manual_dir)
  else:
    check_preparable(data_dir, manual_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('kdjax: imagenet2012 prepared')
  info = describe(image_size)

  def load():
    train, test = JpegSource(data_dir, 'train'), JpegSource(data_dir, 'test')
    return arrays.Dataset(NAME, train, train.labels(), test, test.labels(), NUM_CLASSES,
                          MEAN, STD, info.image_shape, encoded=True)
  return load
