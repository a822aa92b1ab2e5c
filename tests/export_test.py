"""kdjax.export: a student out to the study's PyTorch model and to a plain Flax
directory, with kdjax's logits, and back through kdjax.convert."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import checkpoint
from kdjax import convert
from kdjax import export
from kdjax import models
from kdjax import teachers
from kdjax import workdir as workdir_lib
from tiny import with_devices

torch = pytest.importorskip('torch')
from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.25, 0.3)


def _randomized_batchnorm(variables, seed=0):
  """Trained-looking BatchNorm scales, biases and statistics."""
  rng = np.random.default_rng(seed)
  def leaf(path, x):
    name = jax.tree_util.keystr(path)
    if "['scale']" in name or "['var']" in name:
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    if "['mean']" in name or ("['bias']" in name and 'bn' in name):
      return rng.normal(0, 0.1, x.shape).astype(np.float32)
    return np.asarray(x)
  return jax.tree_util.tree_map_with_path(leaf, variables)


def _workdir(directory, name, num_classes=10, image_shape=(32, 32, 3), **kwargs):
  """A finished workdir of one checkpoint of model `name` with random weights."""
  model = models.get_model(name, num_classes=num_classes, **kwargs)
  variables = _randomized_batchnorm(jax.jit(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False))())
  workdir_lib.write_model_file(str(directory), name, num_classes, kwargs, MEAN, STD, image_shape)
  checkpoint.save_variables(str(directory), variables)
  (directory / 'config.json').write_text(json.dumps({'num_epochs': 1, 'method': 'self'}))
  (directory / 'metrics.jsonl').write_text('{}\n')
  return model, variables


def _pixels(image_shape=(32, 32, 3), n=4, seed=1):
  return np.random.default_rng(seed).normal(size=(n, *image_shape)).astype(np.float32)


def _kdjax(model, variables, pixels):
  return model.apply(variables, jnp.asarray(pixels), train=False)


def _torch_outputs(torch_model, pixels):
  with torch.no_grad():
    return torch_model.eval().forward_with_heads(
        torch.from_numpy(pixels.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize('kwargs,heads,shape', [
    ({}, False, (32, 32, 3)), ({'heads': True}, True, (32, 32, 3)),
    ({'width': 8}, False, (28, 28, 1))], ids=['resnet18', 'resnet18_heads', 'fashion_width8'])
def test_a_resnet18_loads_into_the_studys_model_with_kdjaxs_logits(tmp_path, kwargs, heads,
                                                                   shape):
  model, variables = _workdir(tmp_path / 'run', 'resnet18', image_shape=shape, **kwargs)
  output = str(tmp_path / 'student.pt')
  message = export.export(str(tmp_path / 'run'), 'torch', output, heads=heads)
  assert 'study layout' in message and 'StudyResNet(stage_sizes=(2, 2, 2, 2)' in message
  study = torch_models.StudyResNet(num_classes=10, heads=heads, width=kwargs.get('width', 64),
                                   in_channels=shape[-1])
  study.load_state_dict(torch.load(output))  # strict: every key, every shape
  pixels = _pixels(shape)
  logits, head_outputs = _torch_outputs(study, pixels)
  ours = _kdjax(model, variables, pixels)
  np.testing.assert_allclose(logits.numpy(), ours['logits'], rtol=1e-4, atol=1e-4)
  assert len(head_outputs) == (3 if heads else 0)
  for (_, head_logits), kdjax_logits in zip(head_outputs, ours.get('head_logits', ())):
    np.testing.assert_allclose(head_logits.numpy(), kdjax_logits, rtol=1e-4, atol=1e-4)


def test_repvgg_exports_fused_and_unfused_in_chenyaofos_layout(tmp_path):
  model, variables = _workdir(tmp_path / 'run', 'repvgg_a0', width=16)
  pixels = _pixels()
  ours = _kdjax(model, variables, pixels)['logits']
  widths = tuple(int(m * 16) for m in (0.75, 0.75, 1.5, 3, 20))
  for fused in (True, False):
    output = str(tmp_path / f'fused{fused}.pt')
    message = export.export(str(tmp_path / 'run'), 'torch', output, fused=fused)
    assert message.endswith(
        'Load it: pytorch_cifar_models.repvgg.RepVGG(num_blocks=[2, 4, 14, 1], num_classes=10, '
        f'width_multiplier=[0.1875, 0.1875, 0.1875, 0.625], deploy={fused})'
        f'.load_state_dict(torch.load({output!r}))')
    reference = torch_models.RepVGG(10, widths=widths, deploy=fused)
    reference.load_state_dict(torch.load(output))
    with torch.no_grad():
      logits = reference.eval()(torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(logits.numpy(), ours, rtol=1e-4, atol=1e-4)


def test_errors_are_one_line_before_anything_is_written(tmp_path):
  def fails(message, *args, **kwargs):
    with pytest.raises(export.ExportError, match=message):
      export.export(*args, **kwargs)
  out = str(tmp_path / 'out')
  fails(r"No workdir at '.*nowhere'", str(tmp_path / 'nowhere'), 'torch', out)
  (tmp_path / 'empty').mkdir()
  fails(r'empty has no model.json', str(tmp_path / 'empty'), 'torch', out)
  workdir_lib.write_model_file(str(tmp_path / 'unfinished'), 'resnet18', 10, {}, MEAN, STD,
                               (32, 32, 3))
  (tmp_path / 'unfinished' / 'config.json').write_text(json.dumps({'num_epochs': 2}))
  fails(r'holds no complete checkpoint yet: it is unfinished', str(tmp_path / 'unfinished'),
        'flax', out)
  _workdir(tmp_path / 'r50', 'resnet50', width=4, stage_sizes=(1, 1, 1, 1), heads=True)
  fails(r"the study's MultiResNet is a ResNet18", str(tmp_path / 'r50'), 'torch', out,
        heads=True)
  cohort = {'members': [['resnet18', {'width': 4}], ['resnet18', {'width': 4}]]}
  _workdir(tmp_path / 'cohort', models.COHORT, **cohort)
  fails(r"a cohort of \['resnet18', 'resnet18'\]; pass --member=N \(0 to 1\)",
        str(tmp_path / 'cohort'), 'flax', out)
  assert not os.path.exists(out)
  (tmp_path / 'out').write_text('keep me')
  fails(r'out exists; pass --overwrite', str(tmp_path / 'r50'), 'flax', out)
  assert (tmp_path / 'out').read_text() == 'keep me'
  fails(r'--checkpoint=5: .* holds the checkpoints of steps \[0\]; name one of them',
        str(tmp_path / 'r50'), 'flax', str(tmp_path / 'other'), which='5')
  # Through the command line: one line, exit status 2.
  result = subprocess.run([sys.executable, '-m', 'kdjax.export', f'--workdir={tmp_path / "r50"}',
                           '--to=flax', f'--output={out}'], cwd=ROOT, text=True,
                          capture_output=True, env=with_devices(1), timeout=300)
  assert result.returncode == 2 and result.stderr.strip().splitlines() == [
      f'error: {out} exists; pass --overwrite to replace it, or another --output.']


def test_a_run_still_training_exports_its_latest_checkpoint_and_says_so(tmp_path):
  _workdir(tmp_path / 'run', 'resnet18', width=4)
  (tmp_path / 'run' / 'config.json').write_text(json.dumps({'num_epochs': 3}))
  message = export.export(str(tmp_path / 'run'), 'flax', str(tmp_path / 'out'))
  assert 'from the last checkpoint (step 0)' in message
  assert 'The run is still training (1 of 3 epochs).' in message


def test_a_cohort_member_exports_alone(tmp_path):
  cohort = {'members': [['resnet18', {'width': 4}], ['resnet18', {'width': 8}]]}
  model, variables = _workdir(tmp_path / 'cohort', models.COHORT, **cohort)
  export.export(str(tmp_path / 'cohort'), 'flax', str(tmp_path / 'peer'), member=1)
  peer = teachers.load(str(tmp_path / 'peer'))
  pixels = _pixels()
  np.testing.assert_array_equal(
      _kdjax(peer.model, peer.variables, pixels)['logits'],
      _kdjax(model, variables, pixels)['peers'][0]['logits'])


def test_a_run_trained_on_one_device_exports_to_both_and_converts_back(
    tmp_path, monkeypatch, digits_self_kd):
  # A narrow, shallow student with heads (the study's row 4 recipe), trained
  # one epoch on digits by main.py on one device.
  workdir = digits_self_kd
  spec = json.loads((workdir / 'model.json').read_text())
  pixels = _pixels()
  trained = models.get_model('resnet18', num_classes=10,
                             **teachers.tuples(spec['kwargs']))
  _, variables = checkpoint.restore_best_variables(str(workdir), jax.eval_shape(
      lambda: trained.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)))
  ours = _kdjax(trained, variables, pixels)

  # To PyTorch, with the heads: the constructor the export prints loads it.
  output = str(tmp_path / 'student.pt')
  message = export.export(str(workdir), 'torch', output, heads=True)
  constructor = message.split('Load it: ')[1].split('.load_state_dict')[0]
  assert constructor == ('kdjax.torch_models.StudyResNet(stage_sizes=(1, 1, 2, 1), '
                         'num_classes=10, width=4, in_channels=3, heads=True, expansion=1)')
  study = eval(constructor, {'kdjax': __import__('kdjax.torch_models')})  # pylint: disable=eval-used
  study.load_state_dict(torch.load(output))
  logits, heads = _torch_outputs(study, pixels)
  np.testing.assert_allclose(logits.numpy(), ours['logits'], rtol=1e-4, atol=1e-4)
  for (_, head_logits), kdjax_logits in zip(heads, ours['head_logits']):
    np.testing.assert_allclose(head_logits.numpy(), kdjax_logits, rtol=1e-4, atol=1e-4)

  # Back through kdjax.convert: the same logits (the heads converted too).
  back = str(tmp_path / 'back')
  state_dict, _ = convert.read_state_dict(output)
  convert.write_teacher(back, 'resnet18', convert.torch_to_flax('resnet18', state_dict),
                        MEAN, STD, convert.model_kwargs('study', state_dict))
  returned = teachers.load(back)
  np.testing.assert_allclose(_kdjax(returned.model, returned.variables, pixels)['logits'],
                             ours['logits'], rtol=1e-5, atol=1e-5)

  # To Flax: a teacher directory, which the README's lines load.
  monkeypatch.chdir(tmp_path)  # the README's lines read 'student'
  export.export(str(workdir), 'flax', 'student')
  assert 'heads' not in json.loads((tmp_path / 'student' / 'model.json').read_text())['kwargs']
  readme = open(os.path.join(ROOT, 'README.md')).read()
  lines = readme[readme.index('## Export a trained student'):].split('```python\n')[1]
  images = np.random.default_rng(2).uniform(size=(4, 32, 32, 3)).astype(np.float32)
  scope = {'images': images}
  exec(lines.split('```')[0], scope)  # pylint: disable=exec-used
  normalized = (images - np.array(spec['mean'])) / np.array(spec['std'])
  np.testing.assert_allclose(scope['logits'], _kdjax(trained, variables, normalized)['logits'],
                             rtol=1e-5, atol=1e-5)
  assert teachers.load('student').num_classes == 10
