"""torchvision's ResNets: kdjax's ImageNet stem against torchvision's own models,
their weights converted in, students exported back, and the published files
fetched (from a server on 127.0.0.1)."""
import functools
import hashlib
import http.server
import json
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kdjax import checkpoint
from kdjax import convert
from kdjax import evaluate
from kdjax import export
from kdjax import models
from kdjax import study
from kdjax import teachers
from kdjax import workdir as workdir_lib
from kdjax.data import imagenet

torch = pytest.importorskip('torch')
from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)

NUM_CLASSES = 10
# Small enough for the CPU, large enough that every stage keeps a 2x2 grid or more.
SIZE = 64


@functools.cache
def _torchvision_model(name):
  torch.manual_seed(0)
  model = getattr(torch_models.torchvision().models, name)(num_classes=NUM_CLASSES)
  return torch_models.randomize_batchnorm(model)


@functools.cache
def _images():
  return np.random.RandomState(0).randn(2, SIZE, SIZE, 3).astype(np.float32)


def _torch_logits(model):
  with torch.no_grad():
    return model(torch.from_numpy(_images().transpose(0, 3, 1, 2))).numpy()


def _kdjax_logits(name, variables, **kwargs):
  model = models.get_model(name, NUM_CLASSES, stem='imagenet', **kwargs)
  return np.asarray(jax.jit(functools.partial(model.apply, train=False))(
      variables, jnp.asarray(_images()))['logits'])


@pytest.mark.parametrize('name', ['resnet18', 'resnet34', 'resnet50'])
def test_imagenet_stem_computes_torchvisions_logits(name):
  tv = _torchvision_model(name)
  state_dict = {k: v.numpy() for k, v in tv.state_dict().items()}
  assert convert.detect_layout(name, state_dict) == 'torchvision'
  assert convert.model_kwargs('torchvision') == {'stem': 'imagenet'}
  variables = convert.torch_to_flax(name, state_dict)
  want = _torch_logits(tv)
  assert np.std(want) > 0.1  # the logits tell the inputs apart
  np.testing.assert_allclose(_kdjax_logits(name, variables), want, atol=1e-4, rtol=1e-4)


def test_imagenet_stem_starts_from_torchvisions_init():
  # kaiming_normal_(fan_out, relu) for every conv: std sqrt(2 / (k * k * out)).
  variables = models.get_model('resnet18', NUM_CLASSES, stem='imagenet').init(
      jax.random.PRNGKey(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False)['params']
  stem = np.asarray(variables['stem_conv']['kernel'])
  assert stem.shape == (7, 7, 3, 64)
  assert np.std(stem) == pytest.approx(np.sqrt(2 / (7 * 7 * 64)), rel=0.05)
  conv = np.asarray(variables['stage4_block1']['conv2']['kernel'])
  assert np.std(conv) == pytest.approx(np.sqrt(2 / (3 * 3 * 512)), rel=0.02)


def test_a_student_exports_into_torchvisions_resnet(tmp_path):
  # A finished workdir whose student holds torchvision's weights, converted in.
  name, tv = 'resnet18', _torchvision_model('resnet18')
  variables = convert.torch_to_flax(name, {k: v.numpy() for k, v in tv.state_dict().items()})
  workdir, out = tmp_path / 'run', str(tmp_path / 'student.pt')
  workdir_lib.write_model_file(str(workdir), name, NUM_CLASSES, {'stem': 'imagenet'},
                               imagenet.MEAN, imagenet.STD, (SIZE, SIZE, 3))
  checkpoint.save_variables(str(workdir), variables)
  (workdir / 'config.json').write_text(json.dumps({'num_epochs': 1}))
  (workdir / 'metrics.jsonl').write_text('{}\n')
  message = export.export(str(workdir), 'torch', out)
  assert 'torchvision layout' in message
  constructor = f'torchvision.models.resnet18(num_classes={NUM_CLASSES})'
  assert f'Load it: {constructor}.load_state_dict(torch.load({out!r}))' in message
  # A fresh torchvision model loads it strictly and computes the same logits.
  fresh = eval(constructor, {'torchvision': torch_models.torchvision()})  # pylint: disable=eval-used
  fresh.load_state_dict(torch.load(out), strict=True)
  np.testing.assert_allclose(_torch_logits(fresh.eval()), _torch_logits(tv), atol=1e-5)
  # Other block counts build through torchvision's ResNet class.
  assert export.torch_constructor(name, 5, {'stem': 'imagenet', 'stage_sizes': (1, 1, 1, 1)},
                                  (SIZE, SIZE, 3)) == (
      'torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], '
      'num_classes=5)')


@pytest.mark.parametrize('kwargs, heads, problem', [
    ({'stem': 'imagenet', 'width': 8}, False, 'width 8'),
    ({'stem': 'imagenet', 'heads': True}, True, 'no intermediate heads'),
])
def test_what_torchvision_cannot_hold_is_refused(tmp_path, kwargs, heads, problem):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'model.json').write_text(json.dumps({
      'model': 'resnet18', 'num_classes': NUM_CLASSES, 'kwargs': kwargs,
      'mean': imagenet.MEAN, 'std': imagenet.STD, 'image_shape': [SIZE, SIZE, 3]}))
  (workdir / 'config.json').write_text(json.dumps({'num_epochs': 1}))
  with pytest.raises(export.ExportError, match=problem):
    export.export(str(workdir), 'torch', str(tmp_path / 'out.pt'), heads=heads)
  assert not (tmp_path / 'out.pt').exists()


@pytest.fixture(name='published')
def _published(tmp_path):
  """A torchvision ResNet18 file named as torchvision names its weights (the
  sha256 prefix in the name), served on 127.0.0.1: resnet18_imagenet as
  kdjax.study lists it, but from here."""
  path = tmp_path / 'resnet18.pth'
  torch.save(_torchvision_model('resnet18').state_dict(), path)
  payload = path.read_bytes()
  digest = hashlib.sha256(payload).hexdigest()
  filename = f'resnet18-{digest[:8]}.pth'

  class Handler(http.server.BaseHTTPRequestHandler):

    def do_GET(self):  # pylint: disable=invalid-name
      if self.path != f'/models/{filename}':
        self.send_error(404)
        return
      self.send_response(200)
      self.send_header('Content-Length', str(len(payload)))
      self.end_headers()
      self.wfile.write(payload)

    def log_message(self, *args):
      del args

  httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
  threading.Thread(target=httpd.serve_forever, daemon=True).start()
  listed = study.TEACHERS['resnet18_imagenet']
  yield listed._replace(url=f'http://127.0.0.1:{httpd.server_address[1]}/models/{filename}',
                        filename=filename, sha256_prefix=digest[:8])
  httpd.shutdown()


def test_fetch_converts_torchvisions_published_file_into_an_imagenet_teacher(
    published, tmp_path):
  listed = study.TEACHERS['resnet34_imagenet']
  assert listed.url == 'https://download.pytorch.org/models/resnet34-b627a593.pth'
  assert (listed.arch, listed.sha256_prefix) == ('resnet34', 'b627a593')
  out = str(tmp_path / 'teachers' / 'resnet18_imagenet')
  message = convert.fetch(published, out)
  assert f'starts with the published {published.sha256_prefix}' in message
  assert 'torchvision (IMAGENET1K_V1) reports 69.76%' in message
  spec = json.loads((tmp_path / 'teachers' / 'resnet18_imagenet' / 'model.json').read_text())
  assert spec['kwargs'] == {'stem': 'imagenet'}
  assert tuple(spec['image_shape']) == (224, 224, 3)
  # kdjax.evaluate --teacher=DIR evaluates it on ImageNet unless told otherwise.
  assert evaluate.data_settings(out) == ('imagenet2012', '', '', 224)
  teacher = teachers.load(out, bn='running')
  assert (teacher.mean, teacher.std) == (imagenet.MEAN, imagenet.STD)
  logits = jax.jit(functools.partial(teacher.model.apply, train=False))(
      teacher.variables, jnp.asarray(_images()))['logits']
  np.testing.assert_allclose(logits, _torch_logits(_torchvision_model('resnet18')),
                             atol=1e-4, rtol=1e-4)
