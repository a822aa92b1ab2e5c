"""A published teacher's PyTorch file: downloaded, checked against its
publisher's checksum, converted into a teacher directory."""
import hashlib
import os
from typing import Optional

from kdjax import convert
from kdjax import data
from kdjax import errors
from kdjax import study
from kdjax import workdir as workdir_lib


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _download(teacher: study.Teacher, cache_dir: str) -> str:
  """The path of `teacher`'s file, downloaded into `cache_dir` by tensorflow-
  datasets' download manager (progress bar; a finished download is reused)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    data.probe(teacher.url)  # an offline machine is told at once
    return os.fspath(tfds.download.DownloadManager(download_dir=cache_dir).download(
        teacher.url))
  except Exception as e:  # pylint: disable=broad-except  (requests and TFDS raise many kinds)
    raise errors.TeacherError(
        f'Could not download {teacher.url} ({type(e).__name__}: {e}). Without internet, '
        f'download {teacher.filename} on a connected machine, copy it here and run '
        f'`python -m kdjax.teachers fetch {teacher.name} --file={teacher.filename}`.') from e


def fetch(teacher: study.Teacher, out: str, file: Optional[str] = None,
          cache_dir: Optional[str] = None) -> str:
  """Downloads (or takes `file`), checks, converts and writes `teacher` into the
  teacher directory `out`; returns what it did. A file whose sha256 does not
  start with the published prefix is refused (and a downloaded one deleted, so
  the next fetch downloads it again)."""
  if workdir_lib.has_model_file(out):
    return f'{out} already holds a teacher; remove it to fetch {teacher.name} again.'
  path = file or _download(teacher, cache_dir or os.path.join(os.path.dirname(
      os.path.normpath(out)), 'downloads'))
  digest = sha256(path)
  if teacher.sha256_prefix and not digest.startswith(teacher.sha256_prefix):
    if not file:  # TFDS would reuse the cached file: remove it and its record
      for stale in (path, f'{path}.INFO'):
        if os.path.exists(stale):
          os.remove(stale)
    raise errors.TeacherError(
        f'{path} has sha256 {digest}, but {teacher.filename} is published with one that '
        f'starts {teacher.sha256_prefix}: the file is damaged or not the teacher. '
        + ('Fetch it again.' if not file else f'Download it again from {teacher.url}.'))
  state_dict, _ = convert.read_state_dict(path)
  layout, _, _ = convert.convert_into(teacher.arch, state_dict, out)
  check = (f'sha256 {digest} starts with the published {teacher.sha256_prefix}'
           if teacher.sha256_prefix else
           f'sha256 {digest} (its publisher gives no checksum; the conversion found '
           f'every {teacher.arch} weight in the {layout} layout)')
  reported = f'{teacher.source} reports {teacher.source_top1:.2f}%'
  if teacher.top1 != teacher.source_top1:
    reported = f'the study reports {teacher.top1:.2f}%, {reported}'
  return (f'Converted {path} ({check}) into {out}. Check its accuracy: python -m '
          f'kdjax.evaluate --teacher={out} ({reported}).')
