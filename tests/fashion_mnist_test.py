"""Fashion-MNIST: IDX files checked by content, and training on the real files.

The loader tests write small IDX files; the real-data tests read Debian's
dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`, which
.ci/run installs) and skip, saying so, without it.
"""
import gzip
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

from kdjax import data
from kdjax.data import arrays
from kdjax.data import idx
from tiny import mock_tfds
from tiny import with_devices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEEDS_FILES = pytest.mark.skipif(
    not os.path.isdir(data.FASHION_MNIST_DIR),
    reason=f'Fashion-MNIST is not in {data.FASHION_MNIST_DIR}: run `apt-get install '
           'dataset-fashion-mnist` (Debian) to run the tests on the real files.')
# The published order of the training set begins with these labels
# (zalandoresearch/fashion-mnist): ankle boot, T-shirt, T-shirt, dress, ...
FIRST_TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def _idx_bytes(array: np.ndarray) -> bytes:
  return struct.pack(f'>I{array.ndim}I', idx.UBYTE << 8 | array.ndim, *array.shape) + (
      array.astype(np.uint8).tobytes())


def _write_gz(path, content: bytes, level=9, mtime=0):
  with open(path, 'wb') as f, gzip.GzipFile(fileobj=f, mode='wb', compresslevel=level,
                                            mtime=mtime) as g:
    g.write(content)


def _write_dataset(folder, num_train=12, num_test=5, size=28, seed=0, level=9):
  """Four small IDX files in `folder` under Fashion-MNIST's names, and the
  spec (shapes, SHA-256s) they satisfy; returns (spec, arrays)."""
  rng = np.random.default_rng(seed)
  arrays = [rng.integers(0, 256, (num_train, size, size)), rng.integers(0, 10, num_train),
            rng.integers(0, 256, (num_test, size, size)), rng.integers(0, 10, num_test)]
  files = []
  os.makedirs(folder, exist_ok=True)
  for real, array in zip(idx.FASHION_MNIST, arrays):
    content = _idx_bytes(array)
    _write_gz(os.path.join(folder, real.name), content, level)
    files.append(idx.IdxFile(real.name, array.shape, hashlib.sha256(content).hexdigest()))
  return idx.IdxDataset(*files), arrays


def test_well_formed_files_load_in_their_order_whatever_their_gzip_bytes(tmp_path):
  spec, arrays = _write_dataset(tmp_path / 'a')
  (train_images, train_labels), (test_images, test_labels) = idx.read_dataset(
      str(tmp_path / 'a'), spec)
  assert train_images.shape == (12, 28, 28, 1) and train_images.dtype == np.uint8
  assert train_labels.dtype == np.int32 and test_images.shape == (5, 28, 28, 1)
  np.testing.assert_array_equal(train_images[..., 0], arrays[0])
  np.testing.assert_array_equal(train_labels, arrays[1])
  np.testing.assert_array_equal(test_images[..., 0], arrays[2])
  np.testing.assert_array_equal(test_labels, arrays[3])
  # Recompressed (as Debian's package is): other .gz bytes, the same content.
  _write_dataset(tmp_path / 'b', level=1)
  name = spec.train_images.name
  assert ((tmp_path / 'a' / name).read_bytes() != (tmp_path / 'b' / name).read_bytes())
  again = idx.read_dataset(str(tmp_path / 'b'), spec)
  np.testing.assert_array_equal(again[0][0], train_images)


def _truncate_gzip(path):
  path.write_bytes(path.read_bytes()[:-40])


def _short_content(path):
  _write_gz(path, gzip.decompress(path.read_bytes())[:-28])


def _wrong_magic(path):
  content = bytearray(gzip.decompress(path.read_bytes()))
  content[3] = 1  # one dimension: a labels file's magic number
  _write_gz(path, bytes(content))


def _wrong_shape(path):
  content = bytearray(gzip.decompress(path.read_bytes()))
  content[4:8] = struct.pack('>I', 11)  # 11 images, with the 12th's bytes after them
  _write_gz(path, bytes(content))


def _altered_pixel(path):
  content = bytearray(gzip.decompress(path.read_bytes()))
  content[-1] ^= 0xFF
  _write_gz(path, bytes(content))


@pytest.mark.parametrize('damage,message', [
    (lambda path: path.unlink(), r'train-images-idx3-ubyte.gz is missing\.'),
    (_truncate_gzip, r'train-images-idx3-ubyte.gz is not a complete gzip file \(EOFError'),
    (lambda path: path.write_bytes(b'not gzip at all'),
     r'train-images-idx3-ubyte.gz is not a complete gzip file \(BadGzipFile'),
    (_short_content, r'train-images-idx3-ubyte.gz is truncated or padded: 9380 bytes of '
     r'data for shape \(12, 28, 28\), which needs 9408'),
    (_wrong_magic, r'train-images-idx3-ubyte.gz has IDX magic number 0x00000801, not '
     r'0x00000803 \(unsigned bytes in 3 dimensions\)'),
    (_wrong_shape, r'train-images-idx3-ubyte.gz holds an array of shape \(11, 28, 28\), not '
     r'\(12, 28, 28\)'),
    (_altered_pixel, r'train-images-idx3-ubyte.gz has the right shape but other content '
     r'\(SHA-256 of the decompressed file [0-9a-f]{64}, expected [0-9a-f]{64}\): it was '
     r'altered'),
], ids=['missing', 'truncated_gzip', 'not_gzip', 'short_content', 'wrong_magic',
        'wrong_shape', 'altered'])
def test_each_bad_file_is_refused_naming_it_and_the_problem(tmp_path, damage, message):
  spec, _ = _write_dataset(tmp_path)
  damage(tmp_path / spec.train_images.name)
  with pytest.raises(idx.IdxError, match=message):
    idx.read_dataset(str(tmp_path), spec)


def test_fashion_mnist_reads_the_manual_dir_first_and_says_how_to_fix_a_bad_file(
    tmp_path, monkeypatch):
  spec, arrays = _write_dataset(tmp_path / 'files')
  monkeypatch.setattr(idx, 'FASHION_MNIST', spec)
  dataset = data.load_dataset('fashion_mnist', manual_dir=str(tmp_path / 'files'))
  assert dataset.info == data.describe('fashion_mnist')  # the same, without the files
  assert (dataset.num_classes, dataset.mean, dataset.std) == (
      10, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
  np.testing.assert_array_equal(dataset.test_labels, arrays[3])
  (tmp_path / 'files' / spec.test_labels.name).unlink()
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.open_dataset('fashion_mnist', manual_dir=str(tmp_path / 'files'))
  message = str(info.value)
  assert message.startswith(f'{tmp_path / "files" / spec.test_labels.name} is missing.')
  assert '--config.manual_dir=FOLDER' in message and 'dataset-fashion-mnist' in message


def test_main_refuses_a_bad_file_in_one_line_before_writing_anything(tmp_path):
  folder = tmp_path / 'files'
  folder.mkdir()
  _write_gz(folder / idx.FASHION_MNIST.train_images.name,
            _idx_bytes(np.zeros((60000, 28, 28), np.uint8)))  # all black: altered
  workdir = tmp_path / 'run'
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/fashion_mnist.py:baseline',
       f'--workdir={workdir}', f'--config.manual_dir={folder}'],
      cwd=ROOT, env=with_devices(1), text=True, capture_output=True, timeout=300)
  assert result.returncode == 2, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {folder / idx.FASHION_MNIST.train_images.name} has the '
                         'right shape but other content')
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()


def test_a_prepared_tfds_copy_is_read_before_the_debian_files(tmp_path, monkeypatch):
  monkeypatch.setattr(arrays, 'FASHION_MNIST_DIR', str(tmp_path))  # exists, holds nothing
  with mock_tfds(24):
    dataset = data.load_dataset('fashion_mnist')
  assert dataset.train_images.shape == (24, 28, 28, 1) and dataset.num_classes == 10
  assert dataset.info == data.describe('fashion_mnist')


def test_without_files_or_network_the_error_says_how_to_get_them(tmp_path, monkeypatch):
  monkeypatch.setattr(arrays, 'FASHION_MNIST_DIR', str(tmp_path / 'absent'))
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  monkeypatch.setattr(arrays, 'FASHION_MNIST_URL', f'http://127.0.0.1:{port}/')
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.load_dataset('fashion_mnist', data_dir=str(tmp_path / 'tfds'))
  message = str(info.value)
  assert 'ConnectionError' in message and f'127.0.0.1:{port}' in message
  assert 'apt-get install dataset-fashion-mnist' in message
  assert '--config.manual_dir=FOLDER' in message and '--config.data_dir=FOLDER' in message
  assert not (tmp_path / 'tfds').exists()


@NEEDS_FILES
def test_the_real_files_load_in_their_published_order_with_the_recorded_statistics():
  dataset = data.load_dataset('fashion_mnist')
  assert dataset.train_images.shape == (60000, 28, 28, 1)
  assert dataset.test_images.shape == (10000, 28, 28, 1)
  assert dataset.train_labels[:10].tolist() == FIRST_TRAIN_LABELS
  assert np.bincount(dataset.train_labels).tolist() == [6000] * 10
  assert np.bincount(dataset.test_labels).tolist() == [1000] * 10
  pixels = dataset.train_images / 255.0
  np.testing.assert_allclose(data.FASHION_MNIST_MEAN, [pixels.mean()], rtol=1e-12)
  np.testing.assert_allclose(data.FASHION_MNIST_STD, [pixels.std()], rtol=1e-12)


def _train(workdir, config, *overrides):
  """main.py on one device: a tiny ResNet18 for one epoch of the first half of
  the training split (config.train_examples); returns its summary."""
  result = subprocess.run(
      [sys.executable, 'main.py', f'--config=configs/fashion_mnist.py:{config}',
       f'--workdir={workdir}', '--config.width=4', '--config.stage_sizes=(1, 1, 1, 1)',
       '--config.num_epochs=1', '--config.schedule=warmup_cosine',
       '--config.warmup_epochs=0.0', '--config.min_learning_rate=0.0',
       '--config.learning_rate=0.05', '--config.log_every_steps=0',
       '--config.train_examples=30000', *overrides],
      cwd=ROOT, env=with_devices(1), text=True, capture_output=True, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, 'summary.json')) as f:
    return json.load(f)


@NEEDS_FILES
def test_one_epoch_on_the_real_files_teaches_a_student_with_heads(tmp_path):
  # A tiny teacher, then a student of the study's offline + self recipe
  # (mixup, the teacher on batch statistics, heads on 28x28 stages) that
  # learns from it: the 1-channel teacher loads from its workdir.
  teacher = _train(tmp_path / 'teacher', 'teacher')
  with open(tmp_path / 'teacher' / 'model.json') as f:
    assert json.load(f)['image_shape'] == [28, 28, 1]
  student = _train(tmp_path / 'student', 'offline_self_kd',
                   f'--config.teacher={tmp_path / "teacher"}')
  # Measured: teacher 73.86 %, student 69.33 %, its heads 38.55, 48.45 and
  # 56.22 % (chance is 10 %; labels out of the images' order give about
  # that; an image of the wrong shape does not train).
  assert teacher['best_top1'] > 70
  assert student['best_top1'] > 65
  with open(tmp_path / 'student' / 'metrics.jsonl') as f:
    record = json.loads(f.readline())
  assert record['teacher_top1'] == teacher['best_top1']
  assert min(record[f'test_head{i}_top1'] for i in (1, 2, 3)) > 30
