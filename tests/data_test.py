import dataclasses
import io
import socket
import tarfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from kdjax import data
from kdjax import order
from kdjax.data import arrays
from tiny import mock_tfds


def _random_images(n, seed=0, size=32):
  return np.random.default_rng(seed).integers(1, 256, (n, size, size, 3), dtype=np.uint8)


def _keys(n, seed=0):
  return data.example_keys(jax.random.PRNGKey(seed), jnp.arange(n))


def test_augment_keeps_shape_and_dtype():
  images = _random_images(8)
  out = data.augment(jnp.asarray(images), _keys(8))
  assert out.shape == images.shape and out.dtype == jnp.uint8


def test_every_crop_is_a_window_of_the_zero_padded_image_possibly_mirrored():
  images = _random_images(16)
  out = np.asarray(data.augment(jnp.asarray(images), _keys(16)))
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
  offsets, flips = set(), set()
  for image, crop in zip(padded, out):
    found = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (0, 1)
             if np.array_equal(crop[:, ::-1] if flip else crop,
                               image[dy:dy + 32, dx:dx + 32])]
    assert found, 'a crop is not a 32x32 window of the padded image'
    offsets.add(found[0][:2])
    flips.add(found[0][2])
  assert len(offsets) > 4 and flips == {0, 1}  # randomness is really used


def test_flip_is_an_exact_mirror_and_padding_is_black():
  images = _random_images(64)
  out = np.asarray(data.augment(jnp.asarray(images), _keys(64, seed=3)))
  # Zero rows/columns can only come from the padding (inputs are >= 1).
  zero_cols = (out == 0).all(axis=(1, 3))
  assert zero_cols.any()
  for image, crop in zip(images, out):
    inner = crop[~(crop == 0).all(axis=(1, 2))][:, ~(crop == 0).all(axis=(0, 2))]
    h, w = inner.shape[:2]
    windows = [image[y:y + h, x:x + w] for y in (0, 32 - h) for x in (0, 32 - w)]
    assert any(np.array_equal(inner, win) or np.array_equal(inner[:, ::-1], win)
               for win in windows)


def test_same_key_same_batch_and_other_key_other_batch():
  images = jnp.asarray(_random_images(8))
  a = data.augment(images, _keys(8, seed=1))
  b = data.augment(images, _keys(8, seed=1))
  c = data.augment(images, _keys(8, seed=2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def _pil_rotate(image, degrees):
  return np.asarray(Image.fromarray(image).rotate(float(degrees), resample=Image.NEAREST,
                                                  fillcolor=0))


def test_rotate_equals_pils_nearest_rotation():
  rng = np.random.default_rng(0)
  images = _random_images(64, seed=4)
  degrees = np.concatenate([[15.0, -15.0, 7.5, 90.0],
                            rng.uniform(-15, 15, 60)]).astype(np.float32)
  got = np.asarray(jax.jit(data.rotate)(jnp.asarray(images), jnp.asarray(degrees)))
  expected = np.stack([_pil_rotate(i, d) for i, d in zip(images, degrees)])
  assert got.shape == images.shape and got.dtype == np.uint8
  same = (got == expected).all(-1).reshape(len(images), -1).mean(1)
  # float32 against PIL's float64: a pixel whose source lands within ~1e-6 of a
  # pixel border may read its neighbour.
  assert same.min() >= 0.99 and same.mean() >= 0.999, (same.min(), same.mean())
  assert (got[:2] == 0).all(-1).sum() > 50  # corners rotated in are zero-filled


def test_rotation_by_zero_is_the_identity_and_the_angle_is_counter_clockwise():
  images = _random_images(4)
  np.testing.assert_array_equal(data.rotate(jnp.asarray(images), jnp.zeros(4)), images)
  pixel = np.zeros((1, 32, 32, 1), np.uint8)
  pixel[0, 2, 28] = 255  # upper right
  turned = np.asarray(data.rotate(jnp.asarray(pixel), jnp.asarray([90.0])))
  assert turned[0, 3, 2, 0] == 255 and turned.sum() == 255  # upper left


def test_augment_rotates_by_angles_within_the_range_from_the_keys():
  images = jnp.asarray(_random_images(32, seed=5))
  keys = _keys(32, seed=6)
  unrotated = np.asarray(data.augment(images, keys))
  rotated = np.asarray(data.augment(images, keys, rotation_degrees=15.0))
  np.testing.assert_array_equal(rotated, data.augment(images, keys, rotation_degrees=15.0))
  changed = (rotated != unrotated).any(axis=(1, 2, 3))
  # Turns under ~1.9 degrees move no pixel of a 32x32 image (about 1 draw in 8).
  assert changed.sum() >= 20
  # Each is its crop and flip rotated by some angle in [-15, 15], a multiple of
  # data.ANGLE_STEP (0.01 degree).
  for crop, turned in zip(unrotated[:8], rotated[:8]):
    matches = [np.mean(_pil_rotate(crop, d) == turned) for d in np.arange(-1500, 1501) / 100]
    assert max(matches) > 0.999
  halves = np.concatenate([data.augment(images[:16], keys[:16], 15.0),
                           data.augment(images[16:], keys[16:], 15.0)])
  np.testing.assert_array_equal(halves, rotated)  # per-example keys: splits agree


def test_example_keys_depend_on_the_global_position_only():
  key = jax.random.PRNGKey(0)
  whole = data.example_keys(key, jnp.arange(8))
  halves = jnp.concatenate([data.example_keys(key, jnp.arange(4)),
                            data.example_keys(key, jnp.arange(4, 8))])
  np.testing.assert_array_equal(whole, halves)
  assert len({tuple(np.asarray(k).ravel()) for k in whole}) == 8


def test_epoch_permutation_is_a_deterministic_reshuffle():
  a = order.epoch_permutation(0, 3, 100)
  np.testing.assert_array_equal(a, order.epoch_permutation(0, 3, 100))
  assert sorted(a) == list(range(100))
  assert not np.array_equal(a, order.epoch_permutation(0, 4, 100))
  assert not np.array_equal(a, order.epoch_permutation(1, 3, 100))


def test_digits_is_a_fixed_split_of_32x32_uint8_images():
  ds = data.load_dataset('digits')
  assert ds.train_images.shape == (1437, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert ds.test_images.shape == (360, 32, 32, 3)
  assert ds.num_classes == 10 and set(ds.test_labels) == set(range(10))
  again = data.load_dataset('digits')
  np.testing.assert_array_equal(ds.test_labels, again.test_labels)
  pixels = ds.train_images.reshape(-1, 3) / 255
  np.testing.assert_allclose(ds.mean, pixels.mean(0))
  np.testing.assert_allclose(ds.std, pixels.std(0))


def test_cifar100_through_tfds_mock_data():
  with mock_tfds(24):
    ds = data.load_dataset('cifar100')
  assert ds.train_images.shape == (24, 32, 32, 3) and ds.train_images.dtype == np.uint8
  assert ds.train_labels.dtype == np.int32 and ds.num_classes == 100
  assert ds.test_images.shape == (24, 32, 32, 3)


def _sorted_examples(images, labels):
  return sorted(zip((image.tobytes() for image in images), labels.tolist()))


def _names(prefix, n):
  return ''.join(f'{prefix}{i}\n' for i in range(n)).encode()


def _write_cifar100_archive(path, num_train, num_test, seed=0):
  """A cifar-100-binary.tar.gz in the real format: coarse, fine label, 3072 CHW bytes."""
  rng = np.random.default_rng(seed)
  splits = {}
  with tarfile.open(path, 'w:gz') as tar:
    for name, n in (('train', num_train), ('test', num_test)):
      images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
      labels = rng.integers(0, 100, n).astype(np.int32)
      records = b''.join(bytes([label % 20, label]) + image.transpose(2, 0, 1).tobytes()
                         for image, label in zip(images, labels))
      splits[name] = (images, labels)
      files = [(f'{name}.bin', records)]
      if name == 'train':
        files += [('fine_label_names.txt', _names('fine', 100)),
                  ('coarse_label_names.txt', _names('coarse', 20))]
      for filename, content in files:
        info = tarfile.TarInfo(f'cifar-100-binary/{filename}')
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
  return splits


def test_cifar100_prepared_offline_from_a_manual_dir_archive(tmp_path, monkeypatch):
  manual_dir = tmp_path / 'manual'
  manual_dir.mkdir()
  archive = manual_dir / 'cifar-100-binary.tar.gz'
  splits = _write_cifar100_archive(archive, num_train=12, num_test=5)
  # TFDS checks the archive against the real file's checksum; register the
  # checksum of this smaller stand-in so the rest of the real path runs.
  from tensorflow_datasets.core.download import checksums
  url_info = dataclasses.replace(checksums.compute_url_info(archive),
                                 filename=archive.name)
  monkeypatch.setattr(tfds.builder_cls('cifar100'), 'url_infos',
                      {data.CIFAR100_URL: url_info})
  ds = data.load_dataset('cifar100', data_dir=str(tmp_path / 'tfds'),
                         manual_dir=str(manual_dir))
  # TFDS stores examples in its own shuffled order: compare as sorted sets.
  for loaded, (images, labels) in (((ds.train_images, ds.train_labels), splits['train']),
                                   ((ds.test_images, ds.test_labels), splits['test'])):
    assert _sorted_examples(*loaded) == _sorted_examples(images, labels)
  # Once prepared, the data_dir alone is enough (no manual_dir, no download).
  again = data.load_dataset('cifar100', data_dir=str(tmp_path / 'tfds'))
  assert (_sorted_examples(again.test_images, again.test_labels)
          == _sorted_examples(*splits['test']))


def test_cifar100_bad_manual_archive_says_how_to_proceed(tmp_path):
  manual_dir = tmp_path / 'manual'
  manual_dir.mkdir()
  _write_cifar100_archive(manual_dir / 'cifar-100-binary.tar.gz', 2, 2)
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.load_dataset('cifar100', data_dir=str(tmp_path / 'tfds'),
                      manual_dir=str(manual_dir))
  message = str(info.value)
  assert 'checksum' in message.lower()
  assert data.CIFAR100_URL in message
  assert '--config.manual_dir' in message and '--config.data_dir' in message


def test_an_offline_machine_gets_the_manual_steps_within_seconds(tmp_path, monkeypatch):
  # The download host does not answer (a closed port here); TFDS alone would
  # retry it for minutes.
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  monkeypatch.setattr(arrays, 'CIFAR100_URL', f'http://127.0.0.1:{port}/cifar-100-binary.tar.gz')
  start = time.time()
  with pytest.raises(data.DatasetUnavailableError) as info:
    data.load_dataset('cifar100', data_dir=str(tmp_path / 'tfds'))
  assert time.time() - start < 20
  message = str(info.value)
  assert 'ConnectionError' in message and f'127.0.0.1:{port}' in message
  assert '--config.manual_dir' in message and '--config.data_dir' in message
  assert not (tmp_path / 'tfds').exists()  # nothing prepared, nothing half-written


def test_unknown_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown dataset 'cifar1000'.*digits"):
    data.load_dataset('cifar1000')


def test_mixup_blends_pixels_and_targets_with_one_lam():
  rng = np.random.default_rng(0)
  pixels = rng.uniform(size=(6, 4, 4, 3)).astype(np.float32)
  targets = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 6)]
  batch, partner = (pixels, targets), (pixels[::-1], targets[::-1])
  mixed_pixels, mixed_targets = data.mixup(batch, partner, np.float32(0.3))
  np.testing.assert_allclose(mixed_pixels, 0.3 * pixels + 0.7 * pixels[::-1], rtol=1e-6)
  np.testing.assert_allclose(mixed_targets, 0.3 * targets + 0.7 * targets[::-1], rtol=1e-6)
  np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, rtol=1e-6)


def test_mixup_lambdas_are_beta_draws_fixed_by_seed_and_step():
  lams = data.mixup_lambdas(0, 100, 4000, 0.4)
  assert lams.dtype == np.float32 and lams.shape == (4000,)
  assert 0 <= lams.min() and lams.max() <= 1
  # Beta(0.4, 0.4): mean 1/2, variance 1 / (4 (2 * 0.4 + 1)) = 0.139.
  assert abs(lams.mean() - 0.5) < 0.02 and abs(lams.var() - 0.139) < 0.01
  # A function of (seed, step) alone: any window of steps draws the same values,
  # so a run resumed mid-epoch, or called K steps at a time, mixes alike.
  np.testing.assert_array_equal(data.mixup_lambdas(0, 1100, 7, 0.4), lams[1000:1007])
  assert not np.array_equal(data.mixup_lambdas(1, 100, 7, 0.4), lams[:7])
  np.testing.assert_array_equal(data.mixup_lambdas(0, 100, 3, 0.0), np.ones(3, np.float32))
