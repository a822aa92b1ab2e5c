"""The study kdjax reproduces, in one place: its teachers and the rows of its
table, on CIFAR-100 and on Fashion-MNIST; and the field's ImageNet table
(ResNet34 -> ResNet18), which its methods are also run on.

The study: "Making ResNet18 smarter with knowledge distillation" (CIFAR-100),
whose training code is github nhandsome-new/resnet_kd (PyTorch Lightning +
Hydra, August 2022); its memo.md logs the runs behind the table. Its rows on
Fashion-MNIST (configs/fashion_mnist.py) are the same recipes at a size a
2-core CPU trains, taught by a teacher kdjax trains first.
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
  # Test top-1 (%) of the study's teacher as the study reports it (CIFAR-100), or
  # of the published weights as the benchmark's papers cite them (ImageNet).
  top1: float
  source_top1: float  # the published file's top-1 (%), as its project reports it
  directory: str  # where kdjax.teachers fetch / kdjax.convert put the converted weights
  dataset: str = 'cifar100'  # what it was trained and is evaluated on


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
    # ImageNet-1k: torchvision's IMAGENET1K_V1 weights (torchvision/models/resnet.py
    # ResNet{18,34,50}_Weights), whose file names carry their sha256 prefix;
    # ResNet34 teaches ResNet18 in the field's ImageNet table.
    **{name: Teacher(
        name, arch, f'https://download.pytorch.org/models/{filename}', filename,
        filename.split('-')[1].split('.')[0], 'torchvision (IMAGENET1K_V1)', top1, top1,
        f'teachers/{name}', 'imagenet2012')
       for name, arch, filename, top1 in (
           ('resnet18_imagenet', 'resnet18', 'resnet18-f37072fd.pth', 69.758),
           ('resnet34_imagenet', 'resnet34', 'resnet34-b627a593.pth', 73.314),
           ('resnet50_imagenet', 'resnet50', 'resnet50-0676ba61.pth', 76.130))},
}


class Row(NamedTuple):
  """A row of the study's table and the config that reproduces it."""
  name: str  # also the folder scripts/reproduce.sh trains it in
  config: str  # main.py's --config
  method: str
  teacher: str  # '' or the teacher's directory name (a TEACHERS name on CIFAR-100)
  mixup: bool
  study_top1: Optional[float]  # the study's test top-1 (%); None where it has none
  width: int = 64  # the student ResNet18's
  # Where study_top1 comes from, where that is not the study (ImageNet's rows).
  source: str = ''


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


# The teacher of the Fashion-MNIST rows: the workdir of configs/fashion_mnist.py:teacher.
FASHION_MNIST_TEACHER = 'runs/fashion_mnist/teacher'
# configs/fashion_mnist.py's sizes: the student's width at each ('' is the default, cpu).
FASHION_MNIST_SIZES = {'': 8, 'full': 64}


def _fashion_mnist_rows(size: str):
  spec = 'configs/fashion_mnist.py:{}' + (f',{size}' if size else '')
  width = FASHION_MNIST_SIZES[size]
  return tuple(Row(name, spec.format(name), method, teacher, mixup, None, width)
               for name, method, teacher, mixup in (
                   ('baseline', 'baseline', '', False),
                   ('offline_kd', 'offline', 'teacher', True),
                   ('self_kd', 'self', '', True),
                   ('offline_self_kd', 'offline_self', 'teacher', True),
                   ('offline_kd_no_mixup', 'offline', 'teacher', False),
                   # The self-distillation methods the study is compared with.
                   ('ps_kd', 'pskd', '', False),
                   ('cs_kd', 'cskd', '', False),
                   ('tf_kd_reg', 'tfkdreg', '', False),
                   ('dlb', 'dlb', '', False),
                   ('uskd', 'uskd', '', False)))


FASHION_MNIST_ROWS = _fashion_mnist_rows('')


# The field's ImageNet-1k table: ResNet34 (torchvision's, 73.31 %) teaching
# ResNet18, at mdistiller's recipe (configs/imagenet.py), and the study's
# self-distillation methods at that scale.
MDISTILLER = "mdistiller's README (github megvii-research/mdistiller)"
DKD_PAPER = 'the DKD paper (Zhao et al., CVPR 2022, arXiv:2203.08679), Table 3'
TTM_README = "zkxufo/TTM's README, its ImageNet table (NKD; SRD as SRRL)"
CTKD_README = ("zhengli97/CTKD's README (KD + CTKD, from its own ResNet34 of 73.96 % and a "
               '120-epoch recipe)')
MLKD_PAPER = 'the MLKD paper (Jin et al., CVPR 2023), its ImageNet table; not re-checked here'
SDD_LOG = ("SDD-CVPR2024's authors' ResNet34 -> ResNet18 run log (their README's table is "
           'ResNet50 -> MobileNet); not re-checked here')
IMAGENET_TEACHER = 'resnet34_imagenet'
IMAGENET_ROWS = tuple(
    Row(name, f'configs/imagenet.py:{name}', method, teacher, mixup, top1, 64, source)
    for name, method, teacher, mixup, top1, source in (
        # torchvision's ResNet18 (IMAGENET1K_V1), the student the papers cite.
        ('baseline', 'baseline', '', False, 69.76, DKD_PAPER),
        ('kd', 'offline', IMAGENET_TEACHER, False, 71.03, MDISTILLER),
        ('at', 'at', IMAGENET_TEACHER, False, 70.69, DKD_PAPER),
        ('crd', 'crd', IMAGENET_TEACHER, False, 71.17, DKD_PAPER),
        ('reviewkd', 'reviewkd', IMAGENET_TEACHER, False, 71.61, DKD_PAPER),
        ('dkd', 'dkd', IMAGENET_TEACHER, False, 71.70, MDISTILLER),
        ('nkd', 'nkd', IMAGENET_TEACHER, False, 71.96, TTM_README),
        ('mlkd', 'mlkd', IMAGENET_TEACHER, False, 71.90, MLKD_PAPER),
        ('dot', 'offline', IMAGENET_TEACHER, False, 71.72, MDISTILLER),
        ('ctkd', 'ctkd', IMAGENET_TEACHER, False, 71.32, CTKD_README),
        ('sdd_dkd', 'sdddkd', IMAGENET_TEACHER, False, 72.02, SDD_LOG),
        ('srd', 'srd', IMAGENET_TEACHER, False, 71.73, TTM_README),
        ('self_kd', 'self', '', True, None, ''),
        ('offline_self_kd', 'offline_self', IMAGENET_TEACHER, True, None, '')))


class Study(NamedTuple):
  """The table of one dataset at one size: its rows, and the config of the
  teacher that scripts/reproduce.sh trains into <runs>/teacher before them
  ('' where the teachers are fetched)."""
  dataset: str
  rows: tuple
  teacher_config: str


STUDIES = {
    'cifar100': Study('cifar100', ROWS, ''),
    'imagenet': Study('imagenet2012', IMAGENET_ROWS, ''),
    'fashion_mnist': Study('fashion_mnist', FASHION_MNIST_ROWS,
                           'configs/fashion_mnist.py:teacher'),
    # At an accelerator's size (scripts/accelerator_check.sh).
    'fashion_mnist_full': Study('fashion_mnist', _fashion_mnist_rows('full'),
                                'configs/fashion_mnist.py:teacher,full'),
}


def teacher_directory(name: Optional[str]) -> str:
  """The directory a study teacher's converted weights are read from."""
  if name not in TEACHERS:
    problem = 'No teacher named' if name is None else f'Unknown teacher {name!r}'
    raise ValueError(f'{problem}: name one of {sorted(TEACHERS)} after the config file '
                     '(e.g. configs/offline_kd.py:resnet50), or set --config.teacher to '
                     'any teacher directory.')
  return TEACHERS[name].directory


def row_of(dataset: str, method: str, teacher: str, mixup: bool, width: int) -> Optional[Row]:
  """The row of `dataset`'s table that a ResNet18 of `width` trained by `method`
  with teacher `teacher` ('' for none) reproduces, if any."""
  rows = [row for table in STUDIES.values() if table.dataset == dataset
          for row in table.rows]
  return next((row for row in rows if (row.method, row.teacher, row.mixup, row.width) ==
               (method, teacher, mixup, width)), None)
