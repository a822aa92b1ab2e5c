"""A miniature ImageNet in the real manual_dir layout (a helper module, not a test).

ILSVRC2012_img_train.tar holds one tar per synset (n01440764.tar) of JPEGs
named as ILSVRC's are (n01440764_10026.JPEG); ILSVRC2012_img_val.tar holds
ILSVRC2012_val_00000001.JPEG, ... whose labels TFDS takes from its own
validation label list, which it zips with the sorted file names: numbered
from 1, the k-th file's class is that list's k-th line. The JPEGs are crops of
scikit-learn's two bundled photos, at quality 90.
"""
import io
import os
import tarfile

import cv2
import numpy as np
from sklearn import datasets
import tensorflow_datasets as tfds

from kdjax.data import imagenet


def validation_synsets(count):
  """The first `count` lines of TFDS's validation label list."""
  path = tfds.core.tfds_path('datasets/imagenet2012/validation_labels.txt')
  return path.read_text().split()[:count]


def class_index(synset):
  """A synset's label: its line in TFDS's label list."""
  path = tfds.core.tfds_path('datasets/imagenet2012/labels.txt')
  return path.read_text().split().index(synset)


def _jpegs(rng, count, min_side=48, max_side=120):
  """`count` JPEGs of random crops (random sizes and aspect ratios) of the photos."""
  photos = datasets.load_sample_images().images  # RGB, 427 x 640
  for _ in range(count):
    photo = photos[rng.integers(len(photos))]
    h, w = rng.integers(min_side, max_side + 1, 2)
    top, left = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
    ok, encoded = cv2.imencode('.JPEG', photo[top:top + h, left:left + w, ::-1],
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    yield encoded.tobytes()


def _add(tar, name, content):
  info = tarfile.TarInfo(name)
  info.size = len(content)
  tar.addfile(info, io.BytesIO(content))


def write(folder, num_val=12, per_class=6, seed=0):
  """Writes both tars into `folder`: `num_val` validation images, and
  `per_class` training images of each synset among their labels. Returns
  {'train': [(file name, label)], 'test': [...]} in the tars' order."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(seed)
  synsets = validation_synsets(num_val)
  written = {'train': [], 'test': []}
  with tarfile.open(os.path.join(folder, imagenet.TRAIN_TAR), 'w') as train:
    for synset in sorted(set(synsets)):
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode='w') as per_synset:
        for i, jpeg in enumerate(_jpegs(rng, per_class)):
          name = f'{synset}_{1000 + i}.JPEG'
          _add(per_synset, name, jpeg)
          written['train'].append((name, class_index(synset)))
      _add(train, f'{synset}.tar', inner.getvalue())
  with tarfile.open(os.path.join(folder, imagenet.VAL_TAR), 'w') as val:
    for k, (synset, jpeg) in enumerate(zip(synsets, _jpegs(rng, num_val)), start=1):
      name = f'ILSVRC2012_val_{k:08d}.JPEG'
      _add(val, name, jpeg)
      written['test'].append((name, class_index(synset)))
  return written
