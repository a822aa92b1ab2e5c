import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from kdjax import errors
from kdjax import optim

torch = pytest.importorskip('torch')


class _StudyScheduler:
  """A transcription of the study's src/utils/cosine_annealing_warmup.py
  (gaussian37's CosineAnnealingWarmUpRestarts), stepped as Lightning steps an
  epoch-interval scheduler: once at construction, then after every epoch."""

  def __init__(self, base_lr, t_0, eta_max, t_up, gamma):
    self.base_lr, self.t_0, self.t_i, self.t_up, self.gamma = base_lr, t_0, t_0, t_up, gamma
    self.base_eta_max = eta_max
    self.cycle, self.t_cur, self.last_epoch = 0, -1, -1
    self.step()

  def step(self):
    epoch = self.last_epoch + 1
    self.t_cur += 1
    if self.t_cur >= self.t_i:
      self.cycle += 1
      self.t_cur -= self.t_i
      self.t_i = (self.t_i - self.t_up) * 1 + self.t_up  # T_mult = 1
    self.eta_max = self.base_eta_max * self.gamma**self.cycle
    self.last_epoch = epoch
    if self.t_cur == -1:
      self.lr = self.base_lr
    elif self.t_cur < self.t_up:
      self.lr = (self.eta_max - self.base_lr) * self.t_cur / self.t_up + self.base_lr
    else:
      self.lr = self.base_lr + (self.eta_max - self.base_lr) * (1 + math.cos(
          math.pi * (self.t_cur - self.t_up) / (self.t_i - self.t_up))) / 2


def _config(**fields):
  config = default.get_config()
  config.update(fields)
  return config


def test_the_default_schedule_is_the_studys_per_epoch_warm_restarts():
  steps_per_epoch = 7
  schedule = jax.jit(optim.create_schedule(_config(), steps_per_epoch))
  reference = _StudyScheduler(1e-3, t_0=30, eta_max=0.1, t_up=1, gamma=0.5)
  rates = np.asarray([schedule(step) for step in range(200 * steps_per_epoch)]).reshape(
      200, steps_per_epoch)
  # One rate per epoch, constant over its steps.
  np.testing.assert_array_equal(rates, np.repeat(rates[:, :1], steps_per_epoch, axis=1))
  expected = []
  for _ in range(200):
    expected.append(reference.lr)
    reference.step()
  np.testing.assert_allclose(rates[:, 0], expected, rtol=1e-5)
  checks = {0: 0.001, 1: 0.1, 29: 0.00129017, 30: 0.001, 31: 0.05, 61: 0.025,
            181: 0.0015625, 199: 0.00117715}
  for epoch, rate in checks.items():
    np.testing.assert_allclose(rates[epoch, 0], rate, rtol=1e-5, err_msg=f'epoch {epoch}')
  # The study's mean rate over 200 epochs (the issue measured 0.0154).
  assert 0.015 < rates.mean() < 0.016


def test_restarts_with_k_updates_an_epoch_is_the_studys_schedule_k_times_shorter():
  # configs/fashion_mnist.py: 10 epochs, the rate updated 20 times an epoch.
  steps_per_epoch = 468  # Fashion-MNIST at batch 128: 23.4 steps per update
  config = _config(num_epochs=10, lr_updates_per_epoch=20, restart_epochs=1.5,
                   warmup_epochs=0.05)
  schedule = jax.jit(optim.create_schedule(config, steps_per_epoch))
  rates = np.asarray(jax.vmap(schedule)(jnp.arange(10 * steps_per_epoch)))
  reference = _StudyScheduler(1e-3, t_0=30, eta_max=0.1, t_up=1, gamma=0.5)
  expected = []
  for _ in range(200):
    expected.append(reference.lr)
    reference.step()
  # Step s trains with study epoch floor(s * 20 / 468)'s rate.
  update = np.arange(10 * steps_per_epoch) * 20 // steps_per_epoch
  np.testing.assert_allclose(rates, np.asarray(expected)[update], rtol=1e-5)
  # Every study epoch's rate is used, over 23 or 24 steps.
  assert set(np.bincount(update)) == {23, 24}


def test_warmup_cosine_warms_up_linearly_then_follows_a_cosine_to_the_floor():
  schedule = optim.create_schedule(
      _config(schedule='warmup_cosine', learning_rate=0.1, min_learning_rate=0.0,
              num_epochs=20, warmup_epochs=5), steps_per_epoch=10)
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
  schedule = optim.create_schedule(
      _config(schedule='warmup_cosine', num_epochs=3, warmup_epochs=1), steps_per_epoch=2)
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


@pytest.mark.parametrize('fields,message', [
    ({'schedule': 'warmup_cosine', 'num_epochs': 5, 'warmup_epochs': 5.0},
     r'--config.warmup_epochs=5.0: leaves no cosine phase in num_epochs=5; set it below '
     r'num_epochs'),
    ({'warmup_epochs': 0.5}, r'--config.warmup_epochs=0.5: schedule=restarts warms up for '
     r'whole updates of the rate \(1 an epoch\) at the start of each 30.0-epoch cycle '
     r'\(restart_epochs\); set a multiple of 1/1 epoch below 30.0'),
    ({'warmup_epochs': 30}, r'--config.warmup_epochs=30.0: .* set a multiple of 1/1 epoch '
     r'below 30.0'),
    ({'restart_epochs': 1.5}, r'--config.restart_epochs=1.5: schedule=restarts updates the '
     r'rate 1 time\(s\) an epoch \(lr_updates_per_epoch\), so a cycle must be a whole '
     r'number of updates'),
    ({'restart_epochs': 1.5, 'lr_updates_per_epoch': 20, 'warmup_epochs': 0.07},
     r'--config.warmup_epochs=0.07: .* set a multiple of 1/20 epoch below 1.5'),
    ({'schedule': 'cosine'}, r"--config.schedule=cosine: set it to one of "
     r"\['restarts', 'warmup_cosine', 'step'\]"),
])
def test_a_schedule_that_cannot_run_is_a_clear_error(fields, message):
  with pytest.raises(ValueError, match=message):
    optim.create_schedule(_config(**fields), 10)


def test_the_step_schedule_is_mdistillers():
  # mdistiller/engine/utils.py adjust_learning_rate: epoch e (from 1) runs at
  # 0.05 * 0.1**(number of decay stages below e).
  steps_per_epoch = 3
  schedule = optim.create_schedule(_config(
      schedule='step', learning_rate=0.05, warmup_epochs=0.0, num_epochs=240,
      decay_epochs=(150, 180, 210), decay_rate=0.1), steps_per_epoch)
  for epoch in range(1, 241):
    want = 0.05 * 0.1**np.sum(epoch > np.asarray([150, 180, 210]))
    for step in range((epoch - 1) * steps_per_epoch, epoch * steps_per_epoch):
      np.testing.assert_allclose(float(schedule(step)), want, rtol=1e-6)


def test_the_step_schedule_with_a_warm_up_is_tf_kds():
  # Teacher-free-Knowledge-Distillation: utils.WarmUpLR stepped before each
  # step of epoch 0, then MultiStepLR([60, 120, 160], 0.2).step(epoch) from
  # epoch 1, over SGD(lr=0.1).
  steps_per_epoch = 5
  schedule = optim.create_schedule(_config(
      schedule='step', learning_rate=0.1, warmup_epochs=1.0, num_epochs=200,
      decay_epochs=(60, 120, 160), decay_rate=0.2), steps_per_epoch)
  model = torch.nn.Linear(1, 1)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
  milestones = torch.optim.lr_scheduler.MultiStepLR(optimizer, [60, 120, 160], 0.2)

  class WarmUpLR(torch.optim.lr_scheduler.LRScheduler):  # utils.py, transcribed
    def __init__(self, optimizer, total_iters, last_epoch=-1):
      self.total_iters = total_iters
      super().__init__(optimizer, last_epoch)

    def get_lr(self):
      return [base_lr * self.last_epoch / (self.total_iters + 1e-8)
              for base_lr in self.base_lrs]
  warmup = WarmUpLR(optimizer, steps_per_epoch)
  for epoch in range(200):
    if epoch > 0:
      milestones.step(epoch)
    for i in range(steps_per_epoch):
      if epoch <= 0:
        warmup.step()
      step = epoch * steps_per_epoch + i
      np.testing.assert_allclose(float(schedule(step)), optimizer.param_groups[0]['lr'],
                                 rtol=1e-6, err_msg=f'step {step}')


def test_nesterov_sgd_matches_torch():
  rng = np.random.default_rng(1)
  params = {'w': rng.normal(size=(3, 4)).astype(np.float32)}
  grads = [{'w': rng.normal(size=(3, 4)).astype(np.float32)} for _ in range(5)]
  tx = optim.create_optimizer(lambda step: 0.1, 0.9, 5e-4, nesterov=True)
  jax_params, torch_param = jax.tree.map(jnp.asarray, params), torch.tensor(params['w'],
                                                                          requires_grad=True)
  state = tx.init(jax_params)
  reference = torch.optim.SGD([torch_param], lr=0.1, momentum=0.9, weight_decay=5e-4,
                              nesterov=True)
  for g in grads:
    updates, state = tx.update(jax.tree.map(jnp.asarray, g), state, jax_params)
    jax_params = optax.apply_updates(jax_params, updates)
    torch_param.grad = torch.tensor(g['w'])
    reference.step()
  np.testing.assert_allclose(np.asarray(jax_params['w']), torch_param.detach().numpy(),
                             rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('overrides,message', [
    ({'decay_epochs': ()}, r'decay_epochs=\(\): schedule=step decays after the epochs'),
    ({'decay_epochs': (180, 150)}, 'give rising epochs from 1'),
    ({'warmup_epochs': 150.0}, r'schedule=step warms up before its first decay \(epoch '
     r'150\); set it below that'),
])
def test_a_step_schedule_without_rising_decay_epochs_is_refused(overrides, message):
  config = _config(**{'schedule': 'step', 'warmup_epochs': 0.0, 'decay_epochs': (150,),
                      **overrides})
  with pytest.raises(errors.ConfigError, match=message):
    optim.create_schedule(config, 3)
