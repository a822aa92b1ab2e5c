"""The data order: every composition's rows, per device, from (seed, epoch)."""
import numpy as np
import pytest

from kdjax import order

NUM_TRAIN, BATCH = 100, 8
LABELS = np.random.default_rng(0).integers(0, 5, NUM_TRAIN)
STEPS = NUM_TRAIN // BATCH


def _global(rows, groups):
  """[steps, devices, rows] -> each group's global batch [steps, groups, batch]."""
  steps, devices, per_device = rows.shape
  share = per_device // groups
  return rows.reshape(steps, devices, groups, share).transpose(0, 2, 1, 3).reshape(
      steps, groups, devices * share)


def test_plain_order_is_the_epochs_permutation_in_batches():
  rows = order.epoch_order(3, 2, NUM_TRAIN, BATCH, 4)
  assert rows.shape == (STEPS, 4, 2) and rows.dtype == np.int32
  np.testing.assert_array_equal(
      rows.reshape(-1), order.epoch_permutation(3, 2, NUM_TRAIN)[:STEPS * BATCH])


@pytest.mark.parametrize('num_devices', [1, 2, 4])
def test_each_partner_is_of_its_anchors_class_on_the_anchors_device(num_devices):
  rows = order.epoch_order(3, 2, NUM_TRAIN, BATCH, num_devices, 'pairs', LABELS)
  assert rows.shape == (STEPS, num_devices, 2 * BATCH // num_devices)
  anchors, partners = np.split(rows, 2, axis=-1)  # each device: anchors, then partners
  np.testing.assert_array_equal(LABELS[anchors], LABELS[partners])
  np.testing.assert_array_equal(_global(rows, 2)[:, 0],
                                order.epoch_order(3, 2, NUM_TRAIN, BATCH, 1)[:, 0])
  # The same pairs whatever the device count, drawn anew each epoch.
  np.testing.assert_array_equal(
      _global(rows, 2), _global(order.epoch_order(3, 2, NUM_TRAIN, BATCH, 1, 'pairs',
                                                  LABELS), 2))
  assert not np.array_equal(rows, order.epoch_order(3, 3, NUM_TRAIN, BATCH, num_devices,
                                                    'pairs', LABELS))


def test_partners_are_drawn_uniformly_from_the_class_itself_included():
  labels = np.repeat([0, 1], [2, 98])
  anchors = np.concatenate([order.epoch_order(0, e, 100, 10, 1, 'pairs', labels)
                            for e in range(400)]).reshape(-1, 2, 10)
  first, partner = anchors[:, 0].reshape(-1), anchors[:, 1].reshape(-1)
  # Class 0 has examples 0 and 1: each is its partner about half of the time.
  chosen = partner[labels[first] == 0]
  assert len(chosen) > 500 and set(chosen) == {0, 1}
  assert abs(np.mean(chosen == 0) - 0.5) < 0.05


@pytest.mark.parametrize('num_devices', [1, 4])
def test_each_step_carries_the_previous_steps_examples_across_epochs(num_devices):
  epochs = [order.epoch_order(5, e, NUM_TRAIN, BATCH, num_devices, 'carry')
            for e in range(3)]
  steps = np.concatenate([_global(rows, 2) for rows in epochs])
  new, carried = steps[:, 0], steps[:, 1]
  np.testing.assert_array_equal(carried[1:], new[:-1])  # epoch boundaries included
  np.testing.assert_array_equal(carried[0], new[0])  # the first step carries itself
  # On the device that held them: device d carries the previous step's share d.
  rows = epochs[1]
  np.testing.assert_array_equal(rows[1:, :, BATCH // num_devices:],
                                rows[:-1, :, :BATCH // num_devices])


def test_an_unknown_composition_is_refused():
  with pytest.raises(ValueError, match="Unknown composition 'triples'"):
    order.epoch_order(0, 0, NUM_TRAIN, BATCH, 1, 'triples')
