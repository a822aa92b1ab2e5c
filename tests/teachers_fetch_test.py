"""kdjax.teachers fetch: download, checksum, convert, against a server on 127.0.0.1."""
import functools
import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest

from kdjax import convert
from kdjax import errors
from kdjax import study
from kdjax import teachers

torch = pytest.importorskip('torch')
from kdjax import torch_models  # pylint: disable=g-import-not-at-top  (needs torch)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.cache
def _checkpoint():
  """(bytes of a chenyaofo-layout RepVGG-A0 checkpoint, the model, its sha256)."""
  torch.manual_seed(0)
  model = torch_models.randomize_batchnorm(torch_models.build('repvgg_a0'))
  path = os.path.join(os.environ.get('TMPDIR', '/tmp'), f'kdjax-fetch-{os.getpid()}.pt')
  torch.save(model.state_dict(), path)
  with open(path, 'rb') as f:
    payload = f.read()
  os.remove(path)
  return payload, model, hashlib.sha256(payload).hexdigest()


class _Server:
  """Serves /good (the checkpoint), /bad (a damaged copy) and /flaky (cut off
  half-way the first time, whole afterwards) on 127.0.0.1, counting requests."""

  def __init__(self):
    payload, _, _ = _checkpoint()
    damaged = bytearray(payload)
    damaged[len(damaged) // 2] ^= 0xFF
    files = {'/good': payload, '/bad': bytes(damaged), '/flaky': payload}
    self.requests = []
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        server.requests.append(self.path)
        body = files.get(os.path.dirname(self.path))
        if body is None:
          self.send_error(404)
          return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.path.startswith('/flaky') and server.requests.count(self.path) == 1:
          self.wfile.write(body[:len(body) // 2])
          self.close_connection = True  # the connection drops mid-file
          return
        self.wfile.write(body)

      def log_message(self, *args):
        del args

    self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
    threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

  def teacher(self, folder):
    _, _, digest = _checkpoint()
    filename = f'cifar100_repvgg_a0-{digest[:8]}.pt'
    return study.TEACHERS['repvgg_a0']._replace(url=f'{self.url}/{folder}/{filename}',
                                                filename=filename)._replace(
                                                    sha256_prefix=digest[:8])


@pytest.fixture
def server():
  s = _Server()
  yield s
  s.httpd.shutdown()


def _assert_teaches_like_the_checkpoint(directory):
  _, model, _ = _checkpoint()
  teacher = teachers.load(directory)
  images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  with torch.no_grad():
    expected = model.eval()(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
  got = jax.jit(lambda v, x: teacher.model.apply(v, x, train=False))(teacher.variables, images)
  np.testing.assert_allclose(got['logits'], expected, atol=1e-4, rtol=0)
  assert teacher.mean == convert.NORMALIZATION['chenyaofo'][0]


def test_a_download_with_the_published_checksum_is_converted(server, tmp_path):
  out = str(tmp_path / 'teachers' / 'repvgg_a0')
  message = convert.fetch(server.teacher('good'), out)
  _, _, digest = _checkpoint()
  assert f'sha256 {digest} starts with the published {digest[:8]}' in message
  _assert_teaches_like_the_checkpoint(out)
  assert convert.fetch(server.teacher('good'), out).endswith('remove it to fetch '
                                                             'repvgg_a0 again.')
  assert len(server.requests) == 1


def test_a_download_with_another_checksum_is_refused_and_not_kept(server, tmp_path):
  out = str(tmp_path / 'teachers' / 'repvgg_a0')
  with pytest.raises(errors.TeacherError, match=r'has sha256 [0-9a-f]{64}, but '
                     r'cifar100_repvgg_a0-[0-9a-f]{8}.pt is published with one that starts'):
    convert.fetch(server.teacher('bad'), out)
  assert not os.path.exists(out)
  downloads = tmp_path / 'teachers' / 'downloads'
  assert not [f for f in os.listdir(downloads) if f.startswith('127.0.0.1')
              and not f.endswith('.tmp') and '.tmp.' not in f]
  with pytest.raises(errors.TeacherError):  # fetched again, refused again
    convert.fetch(server.teacher('bad'), out)
  assert server.requests.count(server.requests[0]) == 2


def test_a_broken_download_completes_on_the_next_fetch_and_is_not_fetched_twice(
    server, tmp_path):
  out = str(tmp_path / 'teachers' / 'repvgg_a0')
  teacher = server.teacher('flaky')
  with pytest.raises(errors.TeacherError, match=r'Could not download http://127.0.0.1'):
    convert.fetch(teacher, out)
  assert not os.path.exists(out)
  convert.fetch(teacher, out)
  _assert_teaches_like_the_checkpoint(out)
  assert len(server.requests) == 2
  # The finished download is kept: a second conversion reads it, no request made.
  os.rename(out, out + '.old')
  convert.fetch(teacher, out)
  _assert_teaches_like_the_checkpoint(out)
  assert len(server.requests) == 2


def test_without_a_connection_the_error_says_how_to_fetch_by_hand(tmp_path):
  with socket.socket() as s:  # a port nothing listens on
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  teacher = study.TEACHERS['repvgg_a0']._replace(
      url=f'http://127.0.0.1:{port}/cifar100_repvgg_a0-2df1edd0.pt')
  with pytest.raises(errors.TeacherError, match=(
      r'Could not download http://127.0.0.1:\d+/cifar100_repvgg_a0-2df1edd0.pt .*Without '
      r'internet, download cifar100_repvgg_a0-2df1edd0.pt on a connected machine, copy it '
      r'here and run `python -m kdjax.teachers fetch repvgg_a0 '
      r'--file=cifar100_repvgg_a0-2df1edd0.pt`')):
    convert.fetch(teacher, str(tmp_path / 'teachers' / 'repvgg_a0'))


def _fetch_command(*args):
  return subprocess.run([sys.executable, '-m', 'kdjax.teachers', 'fetch', *args], cwd=ROOT,
                        text=True, capture_output=True, timeout=600)


def test_the_command_line_checks_and_converts_a_local_file(tmp_path):
  payload, _, _ = _checkpoint()
  good = tmp_path / 'good.pt'
  good.write_bytes(payload)
  out = tmp_path / 'teachers' / 'repvgg_a0'
  # A file that is not chenyaofo's published one fails its checksum.
  refused = _fetch_command('repvgg_a0', f'--file={good}', f'--out={out}')
  assert refused.returncode == 2 and 'Traceback' not in refused.stderr
  (line,) = refused.stderr.strip().splitlines()[-1:]
  assert line.startswith('error: ') and 'is published with one that starts 2df1edd0' in line
  assert not out.exists()
  # resnet50's publisher gives no checksum: the conversion checks every weight.
  torch.manual_seed(0)
  resnet = torch_models.randomize_batchnorm(torch_models.build('resnet50'))
  checkpoint = tmp_path / 'ckpt_epoch_240.pth'
  torch.save({'epoch': 240, 'model': resnet.state_dict()}, checkpoint)
  out50 = tmp_path / 'teachers' / 'resnet50'
  result = _fetch_command('resnet50', f'--file={checkpoint}', f'--out={out50}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'its publisher gives no checksum; the conversion found every resnet50 weight' in (
      result.stdout)
  assert teachers.load(str(out50)).num_classes == 100
  usage = _fetch_command('vgg8')
  assert usage.returncode != 0 and 'NAME one of ' + repr(sorted(study.TEACHERS)) in usage.stderr
