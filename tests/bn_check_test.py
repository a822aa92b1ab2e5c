"""kdjax.bn_check: a run's classifiers with stored and re-estimated BatchNorm statistics."""
import json
import os

import jax
import numpy as np

from kdjax import bn_check
from kdjax import steps


def test_stored_statistics_give_the_runs_accuracies_and_reestimates_converge(digits_self_kd):
  # A self-distillation run with mixup, as the study's row 4, trained by main.py.
  tmp_path = digits_self_kd
  results = bn_check.check(str(tmp_path), batches=2, draws=2)
  assert len(results) == 4  # stored, clean, two mixed draws
  with open(os.path.join(tmp_path, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  with open(os.path.join(tmp_path, 'summary.json')) as f:
    summary = json.load(f)
  best = next(r for r in records if r['epoch'] == summary['best_top1_epoch'])
  for key, value in results[0].items():  # the best checkpoint, as the run measured it
    np.testing.assert_allclose(value, best[f'test_{key}'], rtol=1e-6, err_msg=key)
  assert set(results[0]) == {'top1', 'head1_top1', 'head2_top1', 'head3_top1',
                             'ensemble_top1'}

  # Re-estimating on one batch until the moving averages converge makes the
  # eval-mode model compute what the train-mode model computes on that batch.
  config, model, variables, _, _ = bn_check._load(str(tmp_path))  # pylint: disable=protected-access
  config.mean, config.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
  config.augment = False  # the same batch each time
  rng = np.random.default_rng(0)
  batch = rng.integers(0, 256, (16, 32, 32, 3), np.uint8)
  repeats = 300
  reestimated = bn_check.reestimate(
      model, variables, np.broadcast_to(batch, (repeats, *batch.shape)),
      jax.random.split(jax.random.PRNGKey(0), repeats), np.ones(repeats, np.float32),
      np.broadcast_to(np.arange(16), (repeats, 16)), config, jax.devices())
  apply = steps.make_apply(model, config.mean, config.std)
  pixels = batch.astype(np.float32) / 255
  train_mode = jax.vmap(lambda p: apply(variables['params'], variables['batch_stats'], p,
                                        True)[0]['logits'], axis_name=steps.AXIS)(pixels[None])
  eval_mode, _ = apply(reestimated['params'], reestimated['batch_stats'], pixels, False)
  np.testing.assert_allclose(eval_mode['logits'], train_mode[0], rtol=2e-3, atol=2e-3)
  assert not np.allclose(apply(variables['params'], variables['batch_stats'], pixels,
                               False)[0]['logits'], train_mode[0], atol=2e-3)
