import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kdjax import optim

torch = pytest.importorskip('torch')


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_zero():
  schedule = optim.create_schedule(0.1, steps_per_epoch=10, num_epochs=20, warmup_epochs=5)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(25)), 0.05, rtol=1e-6)  # half-way up
  np.testing.assert_allclose(float(schedule(50)), 0.1, rtol=1e-6)  # peak
  # Cosine over the remaining 150 steps: half-way (step 125) is half the peak.
  np.testing.assert_allclose(float(schedule(125)), 0.05, rtol=1e-5)
  np.testing.assert_allclose(float(schedule(50 + 150 // 3)),
                             0.05 * (1 + np.cos(np.pi / 3)), rtol=1e-5)
  np.testing.assert_allclose(float(schedule(200)), 0.0, atol=1e-9)


def test_sgd_matches_torch_sgd_with_momentum_and_weight_decay():
  rng = np.random.default_rng(0)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32),
            'b': rng.normal(size=(4,)).astype(np.float32)}
  grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in params.items()}
           for _ in range(6)]
  schedule = optim.create_schedule(0.1, steps_per_epoch=2, num_epochs=3, warmup_epochs=1)
  lrs = [float(schedule(i)) for i in range(6)]
  assert len(set(lrs)) > 3  # the rates really vary over the steps

  tx = optim.create_optimizer(schedule, momentum=0.9, weight_decay=5e-4)
  jax_params = jax.tree.map(jnp.asarray, params)
  opt_state = tx.init(jax_params)
  for g in grads:
    updates, opt_state = tx.update(jax.tree.map(jnp.asarray, g), opt_state, jax_params)
    jax_params = optax.apply_updates(jax_params, updates)

  torch_params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
  opt = torch.optim.SGD(list(torch_params.values()), lr=lrs[0], momentum=0.9,
                        weight_decay=5e-4)
  for lr, g in zip(lrs, grads):
    for group in opt.param_groups:
      group['lr'] = lr
    for k, p in torch_params.items():
      p.grad = torch.tensor(g[k])
    opt.step()

  for k in params:
    np.testing.assert_allclose(np.asarray(jax_params[k]),
                               torch_params[k].detach().numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(np.asarray(jax_params[k]), params[k])


def test_a_warmup_as_long_as_the_run_is_a_clear_error():
  with pytest.raises(ValueError, match=r'warmup_epochs=5.0 leaves no cosine phase in '
                     r'num_epochs=5; set --config.warmup_epochs below num_epochs'):
    optim.create_schedule(0.1, 10, 5, 5.0)
