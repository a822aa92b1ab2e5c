import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import models
from kdjax.models import layers


def _num_params(model):
  variables = jax.eval_shape(
      lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


def test_resnet18_has_the_reference_parameter_count():
  # torchvision-style CIFAR ResNet18 (kuangliu/pytorch-cifar) with 100 classes.
  assert _num_params(models.get_model('resnet18', num_classes=100)) == 11_220_132


def test_resnet34_parameter_count():
  assert _num_params(models.get_model('resnet34', num_classes=100)) == 21_328_292


@pytest.mark.parametrize('train', [False, True])
def test_tiny_resnet_output_shapes(train):
  model = models.get_model('resnet18', num_classes=100, width=4, stage_sizes=(1, 1, 1, 1))
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  if train:
    out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                           updates['batch_stats'], variables['batch_stats'])
    assert all(jax.tree.leaves(changed))
  else:
    out = model.apply(variables, x, train=False)
  assert set(out) == {'logits', 'position_logits', 'feature', 'stage_features',
                      'stage_preact', 'stage_preact_prior'}
  assert out['logits'].shape == (3, 100) and out['logits'].dtype == jnp.float32
  # SDD's position logits: the classifier at each position of the last map,
  # whose mean is the logits (the classifier is affine, the pool a mean).
  assert out['position_logits'].shape == (3, 4, 4, 100)
  np.testing.assert_allclose(out['position_logits'].mean((1, 2)), out['logits'], rtol=1e-5,
                             atol=1e-6)
  # Each stage's output is its pre-ReLU output through the ReLU, and the prior
  # of that pre-ReLU output is its last BN's (bias, |scale|).
  for stage, preact in zip(out['stage_features'], out['stage_preact']):
    np.testing.assert_array_equal(stage, np.maximum(preact, 0))
  bn = variables['params']['stage4_block1']['bn2']
  np.testing.assert_array_equal(out['stage_preact_prior'][-1][0], bn['bias'])
  np.testing.assert_array_equal(out['stage_preact_prior'][-1][1], np.abs(bn['scale']))
  assert out['feature'].shape == (3, 4 * 8)
  assert [s.shape for s in out['stage_features']] == [
      (3, 32, 32, 4), (3, 16, 16, 8), (3, 8, 8, 16), (3, 4, 4, 32)]
  np.testing.assert_allclose(out['feature'], out['stage_features'][-1].mean((1, 2)),
                             rtol=1e-6)
  assert np.isfinite(np.asarray(out['logits'])).all()


def test_cifar_stem_keeps_resolution_and_stages_halve_it():
  model = models.get_model('resnet18', num_classes=10, width=4, stage_sizes=(1, 1, 1, 1))
  x = jnp.zeros((1, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, state = model.apply(variables, x, train=False, capture_intermediates=True,
                         mutable=['intermediates'])
  # A block returns (its output, the same before the ReLU).
  shapes = {k: v['__call__'][0][0].shape if k.startswith('stage') else v['__call__'][0].shape
            for k, v in state['intermediates'].items()
            if k.startswith('stage') or k == 'stem_conv'}
  assert shapes['stem_conv'] == (1, 32, 32, 4)
  assert shapes['stage1_block1'] == (1, 32, 32, 4)
  assert shapes['stage2_block1'] == (1, 16, 16, 8)
  assert shapes['stage4_block1'] == (1, 4, 4, 32)


def test_bfloat16_computes_in_bfloat16_with_float32_params():
  model = models.get_model('resnet18', num_classes=10, width=4, stage_sizes=(1, 1, 1, 1),
                           dtype=jnp.bfloat16)
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype('float32')}
  _, state = model.apply(variables, x, train=False, capture_intermediates=True,
                         mutable=['intermediates'])
  assert state['intermediates']['stem_conv']['__call__'][0].dtype == jnp.bfloat16


def test_unknown_model_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown model 'resnet19'.*resnet18"):
    models.get_model('resnet19')


def test_self_distillation_heads_reach_the_final_feature_size():
  model = models.get_model('resnet18', num_classes=100, width=4, heads=True)
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  out, state = model.apply(variables, x, train=False, capture_intermediates=True,
                           mutable=['intermediates'])
  assert set(out) == {'logits', 'position_logits', 'feature', 'stage_features',
                      'stage_preact', 'stage_preact_prior', 'head_logits', 'head_features'}
  assert [f.shape for f in out['head_features']] == [(2, 32)] * 3 == [out['feature'].shape] * 3
  assert [l.shape for l in out['head_logits']] == [(2, 100)] * 3
  # Stage i's k x k stride-k conv (k = 8, 4, 2) brings its grid to the final 4x4,
  # through a bottleneck a quarter of the final width.
  grids = [state['intermediates'][f'head{i}']['conv2']['__call__'][0].shape for i in (1, 2, 3)]
  assert grids == [(2, 4, 4, 8)] * 3
  kernels = [variables['params'][f'head{i}']['conv2']['kernel'].shape[:2] for i in (1, 2, 3)]
  assert kernels == [(8, 8), (4, 4), (2, 2)]
  # Heads are separate from the backbone: the final output is unchanged by them.
  plain = models.get_model('resnet18', num_classes=100, width=4)
  backbone = {c: {k: v for k, v in variables[c].items() if not k.startswith('head')}
              for c in variables}
  np.testing.assert_allclose(plain.apply(backbone, x, train=False)['logits'], out['logits'],
                             rtol=1e-6)


def test_resnet18_with_heads_has_the_reference_parameter_count():
  # The study's MultiResNet (Be Your Own Teacher's multi_resnet18_kd less its
  # unused downsample branches), 100 classes.
  head_params = (64 * 128 + 128 * 128 * 64 + 128 * 512    # stage-1 head convs (k = 8)
                 + 128 * 128 + 128 * 128 * 16 + 128 * 512  # stage-2 head (k = 4)
                 + 256 * 128 + 128 * 128 * 4 + 128 * 512   # stage-3 head (k = 2)
                 + 3 * (128 + 128 + 512)                   # their conv biases
                 + 3 * 2 * (128 + 128 + 512)               # their BN scales and biases
                 + 3 * (512 * 100 + 100))                  # their classifiers
  assert head_params == 1_791_020
  assert _num_params(models.get_model('resnet18', heads=True)) == 11_220_132 + head_params


def _init_apply(model, x):
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  return variables, model.apply(variables, x, train=False)


def test_repvgg_stages_keep_32x32_twice_then_halve_and_check_their_count():
  x = jnp.zeros((2, 32, 32, 3))
  model = models.get_model('repvgg_a0', 10, width=8, stage_sizes=(1, 1, 1, 1, 1))
  _, out = _init_apply(model, x)
  # A0's widths (48, 48, 96, 192, 1280 at width 64) scaled to width 8.
  assert [s.shape for s in out['stage_features']] == [
      (2, 32, 32, 6), (2, 32, 32, 6), (2, 16, 16, 12), (2, 8, 8, 24), (2, 4, 4, 160)]
  with pytest.raises(ValueError, match=r'RepVGG has 5 stages, but stage_sizes \(1, 1, 1, 1\)'):
    _init_apply(models.get_model('repvgg_a0', 10, stage_sizes=(1, 1, 1, 1)), x)


@pytest.mark.parametrize('name,stage_sizes,channels', [('resnet18', (1, 1, 1, 1), 16),
                                                       ('repvgg_a0', (1, 1, 1, 1, 1), 6)])
def test_hint_regressor_maps_a_stage_to_the_teachers_channels_and_changes_nothing_else(
    name, stage_sizes, channels):
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3))
  plain = models.get_model(name, 10, width=4, stage_sizes=stage_sizes)
  hinted = models.get_model(name, 10, width=4, stage_sizes=stage_sizes, hint_stage=2,
                            hint_channels=24)
  variables, out = _init_apply(hinted, x)
  stage = out['stage_features'][2]
  assert stage.shape[-1] == channels and out['hint'].shape == (*stage.shape[:3], 24)
  # A 1x1 conv (no bias: BN follows) and a BN: FitNets' regressor.
  regressor = variables['params']['hint_regressor']
  assert jax.tree.map(jnp.shape, regressor) == {
      'conv': {'kernel': (1, 1, channels, 24)}, 'bn': {'scale': (24,), 'bias': (24,)}}
  backbone = {c: {k: v for k, v in variables[c].items() if k != 'hint_regressor'}
              for c in variables}
  np.testing.assert_array_equal(plain.apply(backbone, x, train=False)['logits'], out['logits'])


def test_fused_repvgg_keeps_its_hint_regressor():
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3))
  kwargs = dict(width=4, stage_sizes=(1, 1, 1, 1, 1), hint_channels=5)
  variables, out = _init_apply(models.get_model('repvgg_a0', 10, **kwargs), x)
  fused_kwargs, fused = models.inference_form('repvgg_a0', kwargs, variables)
  fused_out = models.get_model('repvgg_a0', 10, **fused_kwargs).apply(fused, x, train=False)
  np.testing.assert_allclose(fused_out['hint'], out['hint'], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(fused_out['logits'], out['logits'], rtol=1e-4, atol=1e-5)


def test_a_cohort_runs_each_member_as_it_would_run_alone():
  x = jax.random.uniform(jax.random.PRNGKey(1), (2, 32, 32, 3))
  members = [('resnet18', {'width': 4, 'stage_sizes': (1, 1, 1, 1)}),
             ('repvgg_a0', {'width': 4, 'stage_sizes': (1, 1, 1, 1, 1)})]
  variables, out = _init_apply(models.get_model(models.COHORT, 10, members=members), x)
  assert set(variables['params']) == {'members_0', 'members_1'}
  assert len(out['peers']) == 1
  for i, (name, kwargs) in enumerate(members):
    alone = models.get_model(name, 10, **kwargs).apply(
        {c: variables[c][f'members_{i}'] for c in variables}, x, train=False)
    got = out if i == 0 else out['peers'][i - 1]
    np.testing.assert_array_equal(got['logits'], alone['logits'])
  assert not np.allclose(out['logits'], out['peers'][0]['logits'])


@pytest.mark.parametrize('k', [2, 8])
def test_patch_conv_equals_lax_convolution(k):
  rng = np.random.default_rng(k)
  x = jnp.asarray(rng.normal(size=(3, 16, 16, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 5, 7)), jnp.float32)
  numbers = jax.lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))

  def loss(conv):
    return jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1))

  patch = loss(lambda x, w: layers.patch_conv(
      x, w, (k, k), 'VALID', lhs_dilation=None, rhs_dilation=None,
      dimension_numbers=numbers, feature_group_count=1, precision=None))
  reference = loss(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (k, k), 'VALID', dimension_numbers=numbers))
  (value, grads), (ref_value, ref_grads) = jax.jit(patch)(x, w), jax.jit(reference)(x, w)
  np.testing.assert_allclose(value, ref_value, rtol=1e-5)
  for got, want in zip(grads, ref_grads):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
