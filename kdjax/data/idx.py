"""Gzipped IDX files (the MNIST family's format), read and checked by content.

A dataset in IDX files is four `.gz` files, each checked for what it holds, not
for its gzip bytes (Debian's dataset-fashion-mnist recompressed the originals,
so TFDS's checksums of the `.gz` files no longer match): the IDX magic number,
the shape, the length of the data and a SHA-256 of the decompressed file.
"""
import gzip
import hashlib
import os
import struct
import zlib
from typing import NamedTuple, Tuple

import numpy as np

from kdjax import errors

UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one these datasets use


class IdxFile(NamedTuple):
  """What one file must hold."""
  name: str  # the file's name in its folder
  shape: Tuple[int, ...]  # (count,) for labels, (count, height, width) for images
  sha256: str  # of the decompressed file: header and data


class IdxDataset(NamedTuple):
  train_images: IdxFile
  train_labels: IdxFile
  test_images: IdxFile
  test_labels: IdxFile


FASHION_MNIST = IdxDataset(
    IdxFile('train-images-idx3-ubyte.gz', (60000, 28, 28),
            'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888'),
    IdxFile('train-labels-idx1-ubyte.gz', (60000,),
            'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9'),
    IdxFile('t10k-images-idx3-ubyte.gz', (10000, 28, 28),
            '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b'),
    IdxFile('t10k-labels-idx1-ubyte.gz', (10000,),
            '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'),
)


class IdxError(errors.UserError, ValueError):
  """An IDX file that is missing, unreadable or not the one expected; the
  message names the file and what is wrong."""


def read(folder: str, spec: IdxFile) -> np.ndarray:
  """The uint8 array file `spec.name` in `folder` holds, once it proved to be
  the expected one; else an IdxError naming the file and the problem."""
  path = os.path.join(folder, spec.name)
  try:
    with gzip.open(path, 'rb') as f:
      content = f.read()
  except FileNotFoundError:
    raise IdxError(f'{path} is missing.') from None
  except (OSError, EOFError, zlib.error) as e:
    raise IdxError(f'{path} is not a complete gzip file ({type(e).__name__}: {e}).') from None
  header = 4 + 4 * len(spec.shape)
  magic = UBYTE << 8 | len(spec.shape)
  if len(content) < 4 or struct.unpack('>I', content[:4])[0] != magic:
    found = f'0x{struct.unpack(">I", content[:4])[0]:08x}' if len(content) >= 4 else 'nothing'
    raise IdxError(f'{path} has IDX magic number {found}, not 0x{magic:08x} (unsigned '
                   f'bytes in {len(spec.shape)} dimensions): it is not the expected file.')
  shape = struct.unpack(f'>{len(spec.shape)}I', content[4:header])
  if shape != spec.shape:
    raise IdxError(f'{path} holds an array of shape {shape}, not {spec.shape}.')
  if len(content) - header != np.prod(shape):
    raise IdxError(f'{path} is truncated or padded: {len(content) - header} bytes of data '
                   f'for shape {shape}, which needs {np.prod(shape)}.')
  digest = hashlib.sha256(content).hexdigest()
  if digest != spec.sha256:
    raise IdxError(f'{path} has the right shape but other content (SHA-256 of the '
                   f'decompressed file {digest}, expected {spec.sha256}): it was altered '
                   'or is another dataset; fetch the original file again.')
  return np.frombuffer(content, np.uint8, offset=header).reshape(shape)


def read_dataset(folder: str, spec: IdxDataset):
  """((train images [N, H, W, 1], train labels), (test images, test labels)) in
  the files' order, images uint8 and labels int32; every file is checked
  before any is returned."""
  arrays = [read(folder, file) for file in spec]
  images = [a[..., None] for a in arrays[0::2]]
  labels = [a.astype(np.int32) for a in arrays[1::2]]
  return (images[0], labels[0]), (images[1], labels[1])
