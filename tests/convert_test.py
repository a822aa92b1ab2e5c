"""PyTorch teachers ported to Flax give the same logits, and bad state_dicts fail clearly."""
import copy
import functools
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from kdjax import convert
from kdjax import errors
from kdjax import evaluate
from kdjax import models
from kdjax import steps
from kdjax import teachers
from kdjax.models import repvgg
from tiny import mock_tfds
from tiny import tiny_config
from tiny import train_on_mock_cifar
from tiny import unmapped

torch = pytest.importorskip('torch')
from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)

CASES = [('repvgg_a0', 'chenyaofo'), ('resnet18', 'repdistiller'), ('resnet18', 'timm'),
         ('resnet50', 'repdistiller'), ('resnet50', 'timm')]


@functools.cache
def _reference(arch, layout):
  torch.manual_seed(0)
  model = torch_models.randomize_batchnorm(torch_models.build(arch, layout))
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  return model, state_dict


def _images(n=4):
  return np.random.default_rng(0).normal(size=(n, 32, 32, 3)).astype(np.float32)


def _flax_outputs(arch, variables, images, **kwargs):
  model = models.get_model(arch, num_classes=100, **kwargs)
  return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)


@pytest.mark.parametrize('arch,layout', CASES)
def test_converted_model_computes_the_reference_logits_and_features(arch, layout):
  model, state_dict = _reference(arch, layout)
  assert convert.detect_layout(arch, state_dict) == layout
  variables = convert.torch_to_flax(arch, state_dict)
  images = _images()
  with torch.no_grad():
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2))
    logits, feature = model(nchw).numpy(), model.features(nchw).numpy()
  out = _flax_outputs(arch, variables, images)
  # Logits differ between inputs by far more than the tolerance, so a match is not vacuous.
  assert logits.std(0).mean() > 1e-3
  np.testing.assert_allclose(out['logits'], logits, atol=1e-4, rtol=0)
  np.testing.assert_allclose(out['feature'], feature, atol=1e-4 * max(1, np.abs(feature).max()),
                             rtol=0)


@pytest.mark.parametrize('arch,layout', [('repvgg_a0', 'chenyaofo'), ('resnet18', 'timm'),
                                         ('resnet50', 'repdistiller')])
def test_parameter_counts_equal_the_references(arch, layout):
  model, _ = _reference(arch, layout)
  expected = sum(p.numel() for p in model.parameters())
  variables = jax.eval_shape(lambda: models.get_model(arch).init(
      jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3)), train=False))
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == expected
  if arch == 'repvgg_a0':
    assert expected == 7_956_164  # RepVGG-A0's training-time form, 100 classes


def test_fused_repvgg_equals_the_training_form_in_eval_mode():
  _, state_dict = _reference('repvgg_a0', 'chenyaofo')
  variables = convert.torch_to_flax('repvgg_a0', state_dict)
  images = _images()
  train_form = _flax_outputs('repvgg_a0', variables, images)
  fused = repvgg.fuse(variables)
  assert fused['batch_stats'] == {}
  assert all(set(p) == {'rbr_reparam'} for k, p in fused['params'].items() if k != 'classifier')
  deploy = _flax_outputs('repvgg_a0', fused, images, deploy=True)
  np.testing.assert_allclose(deploy['logits'], train_form['logits'], atol=1e-4, rtol=0)


@pytest.mark.parametrize('arch', ['resnet18', 'resnet50'])
def test_be_your_own_teachers_multi_resnet_converts_with_its_heads(arch):
  # The study's res_multi teacher: multi_resnet18_kd / multi_resnet50_kd.
  model, state_dict = _reference(arch, 'byot')
  assert convert.detect_layout(arch, state_dict) == 'byot'
  variables = convert.torch_to_flax(arch, state_dict)
  images = _images()
  with torch.no_grad():
    feature, logits, heads = model.forward_with_heads(
        torch.from_numpy(images.transpose(0, 3, 1, 2)))
  out = _flax_outputs(arch, variables, images, heads=True)
  pairs = [('logits', out['logits'], logits), ('feature', out['feature'], feature)]
  for i, (head_feature, head_logits) in enumerate(heads):
    pairs += [(f'head{i + 1} logits', out['head_logits'][i], head_logits),
              (f'head{i + 1} feature', out['head_features'][i], head_feature)]
  for name, got, expected in pairs:
    expected = expected.numpy()
    spread = expected.std(0).mean()
    assert spread > 1e-4, name  # outputs differ between inputs: the match is not vacuous
    np.testing.assert_allclose(got, expected, atol=1e-3 * spread, rtol=0, err_msg=name)
  # Every parameter the forward pass uses is converted: Multi_ResNet's minus the
  # downsample{i}_1 branches it never calls.
  unused = sum(p.numel() for name, p in model.named_parameters()
               if name.startswith('downsample') and '_1.' in name)
  assert unused > 0
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == sum(
      p.numel() for p in model.parameters()) - unused
  _expect_error(arch, {**state_dict, 'bottleneck4_1.0.weight': np.zeros(3)},
                r"unexpected keys: \['bottleneck4_1.0.weight'\]")


def _expect_error(arch, state_dict, pattern):
  with pytest.raises(convert.ConversionError, match=pattern):
    convert.torch_to_flax(arch, state_dict)


def test_a_missing_key_is_named():
  _, state_dict = _reference('resnet18', 'repdistiller')
  broken = {k: v for k, v in state_dict.items() if k != 'layer2.0.shortcut.1.running_var'}
  _expect_error('resnet18', broken, r"missing keys: \['layer2.0.shortcut.1.running_var'\]")


def test_an_unknown_key_is_named():
  _, state_dict = _reference('repvgg_a0', 'chenyaofo')
  _expect_error('repvgg_a0', {**state_dict, 'stage1.0.se.weight': np.zeros(3)},
                r"unexpected keys: \['stage1.0.se.weight'\]")


def test_a_wrong_shape_is_named():
  _, state_dict = _reference('resnet50', 'timm')
  broken = dict(state_dict, **{'layer3.2.conv2.weight': np.zeros((256, 256, 1, 1), np.float32)})
  _expect_error('resnet50', broken,
                r"wrong shapes: \['layer3.2.conv2.weight: \(256, 256, 1, 1\) does not fit")


def test_a_state_dict_of_another_architecture_is_refused():
  _, state_dict = _reference('resnet18', 'timm')
  _expect_error('repvgg_a0', state_dict, 'Cannot tell the key layout of this repvgg_a0')
  _expect_error('resnet50', state_dict, 'not a resnet50 in the timm layout: missing keys')


def test_cli_converts_a_checkpoint_file_into_a_teacher_with_the_same_logits(tmp_path):
  model, _ = _reference('repvgg_a0', 'chenyaofo')
  src = tmp_path / 'cifar100_repvgg_a0.pt'
  # As RepDistiller saves it: under 'model', from a DataParallel ('module.') model.
  torch.save({'epoch': 240, 'model': {f'module.{k}': v for k, v in model.state_dict().items()}},
             src)
  out = tmp_path / 'teachers' / 'repvgg_a0'
  result = subprocess.run(
      [sys.executable, '-m', 'kdjax.convert', '--arch=repvgg_a0', f'--src={src}', f'--out={out}'],
      cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), text=True,
      capture_output=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "chenyaofo layout, under 'model'" in result.stdout
  teacher = teachers.load(str(out))
  assert teacher.num_classes == 100
  assert teacher.mean == convert.NORMALIZATION['chenyaofo'][0]
  assert 'rbr_reparam' in teacher.variables['params']['stage1_block1']  # fused for speed
  images = _images()
  with torch.no_grad():
    logits = model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  got = jax.jit(lambda v, x: teacher.model.apply(v, x, train=False))(teacher.variables, images)
  np.testing.assert_allclose(got['logits'], logits, atol=1e-4, rtol=0)

  # The converted teacher teaches: an offline run on mock data evaluates it once at
  # start exactly as kdjax.evaluate does, and trains a student from it.
  config = tiny_config(method='offline', teacher=str(out), mixup_alpha=1.0, num_epochs=1,
                       warmup_epochs=0.0, eval_batch_size=16)
  summary = train_on_mock_cifar(config, tmp_path / 'student', num_examples=16)
  with mock_tfds(16):
    direct = evaluate.evaluate_teacher_directory(str(out), batch_size=16)
  assert summary['teacher_top1'] == direct['top1'] and np.isfinite(summary['final_top1'])

  # What the command line refuses, it says in one line (exit status 2).
  for source, message in ((src, f'error: {out} already holds a teacher; remove it or pick '
                                'another --out.'),
                          (tmp_path / 'missing.pt', f'error: Cannot read {tmp_path}/missing.pt '
                                                    'as a PyTorch checkpoint')):
    again = subprocess.run(
        [sys.executable, '-m', 'kdjax.convert', '--arch=repvgg_a0', f'--src={source}',
         f'--out={out}'], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        text=True, capture_output=True, timeout=600)
    assert again.returncode == 2 and 'Traceback' not in again.stderr, again.stderr[-3000:]
    assert again.stderr.strip().splitlines()[-1].startswith(message), again.stderr[-3000:]


def test_a_missing_study_teacher_says_how_to_fetch_it(tmp_path):
  with pytest.raises(errors.TeacherError,
                     match=r'Run `python -m kdjax.teachers fetch repvgg_a0 --out=.*`; without '
                     r'internet, download cifar100_repvgg_a0-2df1edd0.pt from '
                     r'https://github.com/chenyaofo'):
    teachers.load(str(tmp_path / 'teachers' / 'repvgg_a0'))


def test_importing_kdjax_does_not_import_torch():
  code = ('import sys, kdjax.train, kdjax.convert, kdjax.teachers, kdjax.models; '
          'print("torch" in sys.modules)')
  result = subprocess.run([sys.executable, '-c', code], text=True, capture_output=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.stdout.strip() == 'False', result.stderr[-2000:]


@pytest.mark.parametrize('arch,layout', [('repvgg_a0', 'chenyaofo'), ('resnet50', 'repdistiller'),
                                         ('resnet18', 'byot')])
def test_a_teacher_in_batch_mode_computes_the_reference_in_train_mode(arch, layout, tmp_path):
  # PyTorch's train mode: each BatchNorm (each of RepVGG's three branches' own)
  # normalizes with the statistics of the batch, here a mixed one.
  model, state_dict = _reference(arch, layout)
  convert.write_teacher(str(tmp_path), arch, convert.torch_to_flax(arch, state_dict),
                        (0.0,) * 3, (1.0,) * 3, convert.model_kwargs(layout))
  teacher = teachers.load(str(tmp_path), bn='batch')
  images = _images(8)
  mixed = 0.3 * images + 0.7 * images[np.random.default_rng(1).permutation(8)]
  got = {bn: unmapped(steps.make_teacher_apply(teacher, bn))(teacher.variables,
                                                              mixed)['logits']
         for bn in ('batch', 'running')}
  reference = copy.deepcopy(model).train()  # train mode updates its running statistics
  with torch.no_grad():
    expected = reference(torch.from_numpy(mixed.transpose(0, 3, 1, 2)))
  expected = (expected[1] if isinstance(expected, tuple) else expected).numpy()
  np.testing.assert_allclose(got['batch'], expected, atol=1e-4, rtol=0)
  # Batch statistics move the logits by far more than the tolerance: the match
  # is not eval mode's.
  assert np.abs(got['running'] - expected).max() > 100 * 1e-4
