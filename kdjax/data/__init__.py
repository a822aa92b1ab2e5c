"""Data: datasets by name, the two ways a batch reaches the devices, and augmentation.

  arrays.py      datasets by name: the small ones as uint8 arrays (TFDS, IDX
                 files, scikit-learn's digits), what a model needs to know of each
  idx.py         gzipped IDX files read and checked by content (Fashion-MNIST)
  imagenet.py    ImageNet-1k prepared by TFDS's own builder from the ILSVRC tars,
                 every JPEG checked; random-access sources of its JPEGs
  transforms.py  host ops on encoded images: decode, torchvision's
                 RandomResizedCrop and flip, resize + center crop
  stream.py      the host stream: grain workers fetch and transform the rows
                 that the data order names, batches ahead of the step
  feeds.py       device-resident arrays or the host stream, one interface
  augment.py     on-device ops: the study's crop, flip and rotation, mixup
  strong.py      on-device ops: MLKD's strong view (RandAugment's 14 PIL ops
                 and Cutout)
"""
from kdjax.data.arrays import CIFAR100_MEAN
from kdjax.data.arrays import CIFAR100_STD
from kdjax.data.arrays import CIFAR100_URL
from kdjax.data.arrays import DATASETS
from kdjax.data.arrays import Dataset
from kdjax.data.arrays import DatasetInfo
from kdjax.data.arrays import DatasetUnavailableError
from kdjax.data.arrays import describe
from kdjax.data.arrays import FASHION_MNIST_DIR
from kdjax.data.arrays import FASHION_MNIST_MEAN
from kdjax.data.arrays import FASHION_MNIST_STD
from kdjax.data.arrays import FASHION_MNIST_URL
from kdjax.data.arrays import IMAGENET
from kdjax.data.arrays import load_dataset
from kdjax.data.arrays import open_dataset
from kdjax.data.arrays import probe
from kdjax.data.arrays import UnknownDatasetError
from kdjax.data.augment import ANGLE_STEP
from kdjax.data.augment import augment
from kdjax.data.augment import example_keys
from kdjax.data.augment import mixup
from kdjax.data.augment import mixup_lambdas
from kdjax.data.augment import normalize
from kdjax.data.augment import PAD
from kdjax.data.augment import rotate
from kdjax.data.augment import to_float
from kdjax.data.strong import strong_augment
