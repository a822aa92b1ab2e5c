"""The study kdjax reproduces, in one place: its teachers and the rows of its table.

The study: "Making ResNet18 smarter with knowledge distillation" (CIFAR-100),
whose training code is github nhandsome-new/resnet_kd (PyTorch Lightning +
Hydra, August 2022); its memo.md logs the runs behind the table.
"""
from typing import NamedTuple, Optional


class Teacher(NamedTuple):
  """A study teacher: where its PyTorch weights come from and where kdjax keeps
  them once converted."""
  name: str  # as configs/offline_kd.py:<name> names it
  arch: str  # kdjax.models name of the converted model
  url: str
  filename: str  # the file the URL serves
  # The sha256 of the file as its publisher gives it: chenyaofo's file names
  # carry its first 8 hex digits (torch.hub's convention); '' if none is published.
  sha256_prefix: str
  source: str  # the project that trained and published it
  top1: float  # CIFAR-100 test top-1 (%) of the study's teacher, as the study reports it
  source_top1: float  # the published file's top-1 (%), as its project reports it
  directory: str  # where kdjax.teachers fetch / kdjax.convert put the converted weights


TEACHERS = {
    'repvgg_a0': Teacher(
        'repvgg_a0', 'repvgg_a0',
        'https://github.com/chenyaofo/pytorch-cifar-models/releases/download/repvgg/'
        'cifar100_repvgg_a0-2df1edd0.pt', 'cifar100_repvgg_a0-2df1edd0.pt', '2df1edd0',
        'chenyaofo/pytorch-cifar-models', 75.22, 75.22, 'teachers/repvgg_a0'),
    # The study's ResNet50 (79.00 %) was never published; RepDistiller's CIFAR-100
    # ResNet50 stands in for it (mdistiller's cifar_teachers.tar holds the same file).
    'resnet50': Teacher(
        'resnet50', 'resnet50',
        'http://shape2prog.csail.mit.edu/repo/ResNet50_vanilla/ckpt_epoch_240.pth',
        'ckpt_epoch_240.pth', '', 'HobbitLong/RepDistiller', 79.00, 79.34,
        'teachers/resnet50'),
}


class Row(NamedTuple):
  """A row of the study's table and the config that reproduces it."""
  name: str  # also the folder scripts/reproduce.sh trains it in
  config: str  # main.py's --config
  method: str
  teacher: str  # '' or a TEACHERS name
  mixup: bool
  study_top1: float  # the study's test top-1 (%)


ROWS = (
    Row('baseline', 'configs/baseline.py', 'baseline', '', False, 74.40),
    Row('offline_kd_repvgg_a0', 'configs/offline_kd.py:repvgg_a0', 'offline', 'repvgg_a0',
        True, 77.56),
    Row('offline_kd_resnet50', 'configs/offline_kd.py:resnet50', 'offline', 'resnet50', True,
        77.65),
    Row('self_kd', 'configs/self_kd.py', 'self', '', True, 77.89),
    Row('offline_self_kd_repvgg_a0', 'configs/offline_self_kd.py:repvgg_a0', 'offline_self',
        'repvgg_a0', True, 77.95),
    Row('offline_self_kd_resnet50', 'configs/offline_self_kd.py:resnet50', 'offline_self',
        'resnet50', True, 78.36),
    # In the study's memo.md (run 31), not in its table.
    Row('offline_kd_no_mixup_repvgg_a0', 'configs/offline_kd_no_mixup.py:repvgg_a0',
        'offline', 'repvgg_a0', False, 76.86),
)


def teacher_directory(name: Optional[str]) -> str:
  """The directory a study teacher's converted weights are read from."""
  if name not in TEACHERS:
    problem = 'No teacher named' if name is None else f'Unknown teacher {name!r}'
    raise ValueError(f'{problem}: name one of {sorted(TEACHERS)} after the config file '
                     '(e.g. configs/offline_kd.py:resnet50), or set --config.teacher to '
                     'any teacher directory.')
  return TEACHERS[name].directory


def row_of(method: str, teacher: str, mixup: bool) -> Optional[Row]:
  """The row a run of `method` with teacher `teacher` ('' for none) reproduces."""
  return next((row for row in ROWS if (row.method, row.teacher, row.mixup) ==
               (method, teacher, mixup)), None)
