import json
import os
import shutil

import jax
import numpy as np
import pytest

from kdjax import build
from kdjax import data
from kdjax import errors
from kdjax import evaluate
from kdjax import methods
from kdjax import steps
from kdjax import train
from kdjax import workdir as workdir_lib
from kdjax.data import feeds
from tiny import assert_same_steps_up_to_rounding
from tiny import first
from tiny import random_teacher
from tiny import step
from tiny import tiny_config
from tiny import train_on_mock_cifar

TIMING_FIELDS = ('images_per_sec', 'epoch_time_s')


INFO = data.DatasetInfo('random', 10, (32, 32, 3), (0.5, 0.4, 0.3), (0.25, 0.25, 0.3))


def _setup(config, devices=None):
  """(the initial state, build's Run) of `config` on INFO over `devices` (4 by default)."""
  run = build.build(config, INFO, 4, devices or jax.devices()[:4], random_teacher())
  return run.init_state(jax.random.PRNGKey(0)), run


# relation_self's step contains the baseline's, the heads' and RKD's gather;
# dist_sp_pkt_crd's the other terms over the global batch, and CRD's memory.
@pytest.mark.parametrize('method,mixup_alpha', [('relation_self', 1.0),
                                                ('dist_sp_pkt_crd', 1.0)])
def test_one_step_on_4_devices_equals_the_same_global_batch_on_1_device(method, mixup_alpha):
  # Mixup pairs examples across devices (a permutation of the global batch),
  # the student's and the teacher's BN use global statistics, RKD's, DIST's
  # intra-class, SP's and PKT's relations span the global batch and CRD's
  # memory takes every device's rows, so the step is the same however the
  # batch is split.
  config = tiny_config(method=method, mixup_alpha=mixup_alpha, teacher='random',
                       crd_negatives=64)
  assert config.augment and config.rotation_degrees == 15.0
  assert (config.teacher_bn, config.mixup_partner) == ('batch', 'permutation')
  state, _ = _setup(config)
  # Two steps so that updated BN statistics and momentum feed the second one.
  state = state.replace(step=7)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (32, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 32).astype(np.int32)
  results = []
  for devices in (jax.devices()[:1], jax.devices()[:4]):
    n = len(devices)
    run = _setup(config, devices)[1]
    st, imgs, lbls, key, tv = steps.replicate(
        (state, images, labels, jax.random.PRNGKey(3), random_teacher().variables), devices)
    losses = []
    for indices in (np.arange(16), np.arange(16, 32)):
      st, metrics = step(run, st, imgs, lbls, indices.reshape(n, 16 // n), key, tv)
      losses.append(float(first(metrics)['loss']))
    results.append((first(st), losses))
  (one, one_losses), (four, four_losses) = results
  # A wrong partner or key changes the mixed and augmented images, and so the
  # first step's loss.
  np.testing.assert_allclose(one_losses, four_losses, rtol=1e-5)
  # Rounding: the BN statistics (the teacher's too) are means of 4 devices'
  # means, small values (BN biases near 0) amplify it, and so do the large
  # weights of SP (3000) and PKT (30000). Measured on two machines: the median
  # leaf 2e-7 to 5e-7 relative apart; the largest leaf 1.2e-2 (a head's BN bias
  # of norm 8e-4, relation_self) and 3.2e-3 (the stem's BN bias, dist_sp_pkt);
  # the largest element 4.5e-6 to 2.5e-4 apart (2.5e-3 with dist_sp_pkt).
  assert_same_steps_up_to_rounding(
      {'step': one.step, 'params': one.params, 'batch_stats': one.batch_stats},
      {'step': four.step, 'params': four.params, 'batch_stats': four.batch_stats})
  assert int(one.step) == int(four.step) == 9
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), one.params, state.params)
  assert all(jax.tree.leaves(changed))


@pytest.mark.parametrize('method', ['baseline', 'self', 'online'])
def test_evaluate_counts_every_test_example_exactly_once(method):
  config = tiny_config(method=method, peers=('resnet18',) if method == 'online' else ())
  state, run = _setup(config)
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 37).astype(np.int32)
  devices = run.devices
  result = evaluate.evaluate(run.eval_step,
                             steps.replicate({'params': state.params,
                                              'batch_stats': state.batch_stats}, devices),
                             feeds.Resident((), (images, labels), devices),
                             num_examples=37, global_batch=8, devices=devices)
  outputs, _ = run.apply(state.params, state.batch_stats, images.astype(np.float32) / 255,
                         train=False)
  logits = np.asarray(outputs['logits'])
  ranked = np.argsort(-logits, axis=1)
  log_probs = np.asarray(jax.nn.log_softmax(logits))
  assert result['count'] == 37
  np.testing.assert_allclose(result['top1'], 100 * np.mean(ranked[:, 0] == labels))
  np.testing.assert_allclose(
      result['top5'], 100 * np.mean((ranked[:, :5] == labels[:, None]).any(1)))
  np.testing.assert_allclose(result['loss'], -np.mean(log_probs[np.arange(37), labels]),
                             rtol=1e-5)
  if method == 'baseline':
    assert set(result) == {'top1', 'top5', 'loss', 'count'}
    return
  if method == 'online':  # the peer is counted too
    peer = np.asarray(outputs['peers'][0]['logits'])
    assert set(result) == {'top1', 'top5', 'loss', 'count', 'peer1_top1'}
    np.testing.assert_allclose(result['peer1_top1'], 100 * np.mean(peer.argmax(1) == labels))
    assert not np.array_equal(peer.argmax(1), ranked[:, 0])  # a different model's answers
    return
  heads = [np.asarray(h) for h in outputs['head_logits']]
  for i, head in enumerate(heads, 1):
    np.testing.assert_allclose(result[f'head{i}_top1'],
                               100 * np.mean(head.argmax(1) == labels))
  probs = [np.exp(l - l.max(1, keepdims=True)) for l in heads + [logits]]
  ensemble = np.mean([p / p.sum(1, keepdims=True) for p in probs], 0)
  np.testing.assert_allclose(result['ensemble_top1'],
                             100 * np.mean(ensemble.argmax(1) == labels))
  assert len(heads) == 3


def test_batch_size_that_does_not_divide_the_devices_is_a_clear_error(tmp_path):
  with pytest.raises(errors.ConfigError, match=r'--config.batch_size=18: it must divide '
                     r'evenly over the 4 devices; set a multiple of 4'):
    train.train_and_evaluate(tiny_config(batch_size=18), str(tmp_path))
  assert not os.listdir(tmp_path)  # nothing was written


def _records(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _without_timing(records):
  return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


def test_end_to_end_on_mock_tfds100_writes_outputs_and_resumes(tmp_path):
  config = tiny_config()
  workdir = str(tmp_path / 'run')
  summary = train_on_mock_cifar(config, workdir)

  steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints'))
                 if d.isdigit())
  assert steps == [4, 8]  # 64 examples / batch 16 = 4 steps per epoch
  records = _records(workdir)
  assert [r['epoch'] for r in records] == [1, 2] and [r['step'] for r in records] == [4, 8]
  assert all(np.isfinite(r['train_loss']) and 0 <= r['test_top1'] <= 100 for r in records)
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f) == summary
  assert summary['final_top1'] == records[-1]['test_top1']
  assert summary['best_top1'] == max(r['test_top1'] for r in records)
  assert summary['epochs_completed'] == summary['num_epochs'] == 2
  assert summary['config']['width'] == 4

  # The same command again finds the run finished: it resumes, trains nothing.
  again = train_on_mock_cifar(config, workdir)
  assert _records(workdir) == records
  assert again == summary

  # A run that lost its last epoch (killed before saving it) resumes from the
  # epoch-1 checkpoint and ends exactly where the uninterrupted run ended.
  interrupted = str(tmp_path / 'interrupted')
  shutil.copytree(workdir, interrupted)
  shutil.rmtree(os.path.join(interrupted, 'checkpoints', '8'))
  with open(os.path.join(interrupted, 'metrics.jsonl'), 'a') as f:
    f.write(json.dumps(dict(records[-1], test_top1=-1.0)) + '\n')  # a stale record
  resumed = train_on_mock_cifar(config, interrupted)
  assert _without_timing(_records(interrupted)) == _without_timing(records)
  assert resumed['final_top1'] == summary['final_top1']


def test_bfloat16_step_keeps_float32_params_and_a_finite_loss():
  config = tiny_config(dtype='bfloat16')
  state, run = _setup(config)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  st, imgs, lbls, key = steps.replicate((state, images, labels, jax.random.PRNGKey(0)),
                                        run.devices)
  st, metrics = step(run, st, imgs, lbls, np.arange(16).reshape(4, 4), key, {})
  assert np.isfinite(first(metrics)['loss'])
  assert {x.dtype for x in jax.tree.leaves(first(st).params)} == {np.dtype('float32')}


def test_unknown_dtype_is_a_clear_error():
  with pytest.raises(errors.ConfigError, match=r"--config.dtype=float16: set it to one of "
                     r"\['float32', 'bfloat16', 'auto'\]"):
    build.check_config(tiny_config(dtype='float16'), 4)


def test_the_stem_is_checked_and_resolved_by_the_dataset():
  with pytest.raises(errors.ConfigError, match=r"--config.stem=torchvision: set it to one of "
                     r"\['auto', 'cifar', 'imagenet'\]"):
    build.check_config(tiny_config(stem='torchvision'), 4)
  with pytest.raises(errors.ConfigError, match=r"--config.stem=imagenet: repvgg_a0 has one "
                     r"layout"):
    build.check_config(tiny_config(stem='imagenet', model='repvgg_a0'), 4)
  method = methods.get_method('baseline')
  assert method.model_spec(tiny_config())[1].get('stem') is None  # CIFAR's, unsaid
  assert method.model_spec(tiny_config(dataset='imagenet2012'))[1]['stem'] == 'imagenet'
  assert method.model_spec(tiny_config(stem='imagenet'))[1]['stem'] == 'imagenet'
  assert method.model_spec(tiny_config(dataset='imagenet2012', stem='cifar'))[1].get(
      'stem') is None


def test_a_workdir_of_another_config_is_refused_untouched(tmp_path):
  saved = tiny_config().to_json()
  (tmp_path / 'config.json').write_text(saved)
  (tmp_path / 'metrics.jsonl').write_text('{"epoch": 1, "step": 4}\n')
  with pytest.raises(ValueError, match=r"a different config \(num_epochs: 2 -> 5\).*"
                     r"new --workdir"):
    train.train_and_evaluate(tiny_config(num_epochs=5), str(tmp_path))
  # Untouched but for the lock the refused run took (and released) first.
  assert sorted(os.listdir(tmp_path)) == [workdir_lib.LOCK_FILE, 'config.json',
                                          'metrics.jsonl']
  assert (tmp_path / 'config.json').read_text() == saved
