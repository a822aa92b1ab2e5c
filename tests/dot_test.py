"""DOT (kdjax.optim.dot over optim.two_gradients) against mdistiller's
DistillationOrientedTrainer (mdistiller/engine/dot.py), transcribed, over
several steps: parameters both losses reach, and those only one reaches."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import optim

torch = pytest.importorskip('torch')


# --- The reference, transcribed (mdistiller/engine/dot.py) ------------------------
def check_in(t, l):
  return any(t is i for i in l)


def dot_reference(params, d_p_list, momentum_buffer_list, kd_grad_buffer, kd_momentum_buffer,
                  kd_params, *, weight_decay, momentum, momentum_kd, lr, dampening):
  for i, param in enumerate(params):
    d_p = d_p_list[i]
    if weight_decay != 0:
      d_p = d_p.add(param, alpha=weight_decay)
    if momentum != 0:
      buf = momentum_buffer_list[i]
      if buf is None:
        buf = torch.clone(d_p).detach()
        momentum_buffer_list[i] = buf
      elif check_in(param, kd_params):
        buf.mul_(momentum).add_(d_p, alpha=1 - dampening)
      else:
        buf.mul_((momentum_kd + momentum) / 2.).add_(d_p, alpha=1 - dampening)
      d_p = buf
    param.add_(d_p, alpha=-lr)
  for i, (d_p, buf, p) in enumerate(zip(kd_grad_buffer, kd_momentum_buffer, kd_params)):
    if buf is None:
      buf = torch.clone(d_p).detach()
      kd_momentum_buffer[i] = buf
    elif check_in(p, params):
      buf.mul_(momentum_kd).add_(d_p, alpha=1 - dampening)
    else:
      if weight_decay != 0:
        d_p = d_p.add(p, alpha=weight_decay)
      buf.mul_((momentum_kd + momentum) / 2.).add_(d_p, alpha=1 - dampening)
    p.add_(buf, alpha=-lr)


class DistillationOrientedTrainer(torch.optim.Optimizer):
  def __init__(self, params, lr, momentum=0, momentum_kd=0, dampening=0, weight_decay=0):
    super().__init__(params, dict(lr=lr, momentum=momentum, momentum_kd=momentum_kd,
                                  dampening=dampening, weight_decay=weight_decay))
    self.kd_grad_buffer, self.kd_grad_params, self.kd_momentum_buffer = [], [], []

  @torch.no_grad()
  def step_kd(self):
    group, = self.param_groups
    params_with_grad, d_p_list, momentum_kd_buffer_list = [], [], []
    for p in group['params']:
      if p.grad is not None:
        params_with_grad.append(p)
        d_p_list.append(p.grad)
        momentum_kd_buffer_list.append(self.state[p].get('momentum_kd_buffer'))
    self.kd_momentum_buffer = momentum_kd_buffer_list
    self.kd_grad_buffer = d_p_list
    self.kd_grad_params = params_with_grad

  @torch.no_grad()
  def step(self):
    group, = self.param_groups
    params_with_grad, d_p_list, momentum_buffer_list = [], [], []
    for p in group['params']:
      if p.grad is not None:
        params_with_grad.append(p)
        d_p_list.append(p.grad)
        momentum_buffer_list.append(self.state[p].get('momentum_buffer'))
    dot_reference(params_with_grad, d_p_list, momentum_buffer_list, self.kd_grad_buffer,
                  self.kd_momentum_buffer, self.kd_grad_params,
                  weight_decay=group['weight_decay'], momentum=group['momentum'],
                  momentum_kd=group['momentum_kd'], lr=group['lr'],
                  dampening=group['dampening'])
    for p, momentum_buffer in zip(params_with_grad, momentum_buffer_list):
      self.state[p]['momentum_buffer'] = momentum_buffer
    for p, momentum_kd_buffer in zip(self.kd_grad_params, self.kd_momentum_buffer):
      self.state[p]['momentum_kd_buffer'] = momentum_kd_buffer
    self.kd_grad_buffer, self.kd_grad_params, self.kd_momentum_buffer = [], [], []


# --- A problem with parameters of every kind ----------------------------------------
# 'shared' reaches both losses, 'task' only the cross-entropy (as a head the
# distillation term ignores), 'distill' only the distillation (as a term's
# learned part).
def _losses(p, x, y, target, lib):
  exp, mean = (torch.exp, torch.mean) if lib == 'torch' else (jnp.exp, jnp.mean)
  hidden = x @ p['shared']
  task = mean((hidden @ p['task'] - y)**2)
  distill = mean((exp(0.1 * hidden) @ p['distill'] - target)**2)
  return task, distill


LR, MOMENTUM, DELTA, WEIGHT_DECAY, STEPS = 0.1, 0.9, 0.075, 5e-4, 5


def test_dot_equals_the_reference_over_several_steps():
  rng = np.random.default_rng(0)
  start = {'shared': rng.normal(size=(4, 3)), 'task': rng.normal(size=(3, 2)),
           'distill': rng.normal(size=(3, 2))}
  batches = [(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)), rng.normal(size=(8, 2)))
             for _ in range(STEPS)]

  torch_params = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
  optimizer = DistillationOrientedTrainer(
      torch_params.values(), lr=LR, momentum=MOMENTUM - DELTA, momentum_kd=MOMENTUM + DELTA,
      weight_decay=WEIGHT_DECAY)
  want = []
  for x, y, target in batches:  # the reference trainer's order of calls
    task, distill = _losses(torch_params, *map(torch.tensor, (x, y, target)), 'torch')
    optimizer.zero_grad(set_to_none=True)
    distill.backward(retain_graph=True)
    optimizer.step_kd()
    optimizer.zero_grad(set_to_none=True)
    task.backward()
    optimizer.step()
    want.append({k: v.detach().numpy().copy() for k, v in torch_params.items()})

  tx = optim.dot(lambda count: LR, MOMENTUM, DELTA, WEIGHT_DECAY)

  @jax.jit
  def step(params, state, x, y, target):
    grads, _ = optim.two_gradients(
        lambda p: (_losses(p, x, y, target, 'jax'), None), params)
    updates, state = tx.update(grads, state, params)
    return jax.tree.map(lambda p, u: p + u, params, updates), state, grads

  with jax.enable_x64(True):
    params = jax.tree.map(jnp.asarray, start)
    state = tx.init(params)
    for (x, y, target), expected in zip(batches, want):
      params, state, grads = step(params, state, x, y, target)
      for name in start:
        np.testing.assert_allclose(np.asarray(params[name]), expected[name], rtol=1e-12,
                                   atol=1e-14)
  # The parameters each loss does not reach got no gradient at all.
  assert grads[0]['distill'] is None and grads[1]['task'] is None
  assert grads[0]['shared'] is not None and grads[1]['shared'] is not None


def test_dot_with_every_parameter_reached_is_two_momentum_sgd():
  # mdistiller's DOT on a model that both losses reach everywhere: the task
  # buffer is SGD's (weight decay included) at momentum - delta, the other at
  # momentum + delta without decay; the update their sum.
  tx = optim.dot(0.2, MOMENTUM, DELTA, WEIGHT_DECAY)
  params = {'w': jnp.ones(3)}
  state = tx.init(params)
  g1, g2 = {'w': jnp.asarray([1.0, -2.0, 0.5])}, {'w': jnp.asarray([0.3, 0.1, -1.0])}
  task_buffer, distill_buffer = np.zeros(3), np.zeros(3)
  w = np.ones(3)
  for _ in range(3):
    updates, state = tx.update((g1, g2), state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    task_buffer = (MOMENTUM - DELTA) * task_buffer + np.asarray(g1['w']) + WEIGHT_DECAY * w
    distill_buffer = (MOMENTUM + DELTA) * distill_buffer + np.asarray(g2['w'])
    w = w - 0.2 * (task_buffer + distill_buffer)
    np.testing.assert_allclose(np.asarray(params['w']), w, rtol=1e-6)
