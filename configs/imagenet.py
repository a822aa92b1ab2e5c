"""ImageNet-1k: the field's ResNet34 -> ResNet18 table, one command per row.

python main.py --config=configs/imagenet.py:<row> --workdir=runs/imagenet/<row> \\
    --config.manual_dir=FOLDER_OF_THE_ILSVRC2012_TARS [--config.data_dir=TFDS_DIR]

<row> is a row of kdjax.study.IMAGENET_ROWS:
- baseline: ResNet18 and cross-entropy;
- kd, at, crd, reviewkd, dkd: mdistiller's configs/imagenet/r34_r18/*.yaml,
  each from torchvision's ResNet34 (python -m kdjax.teachers fetch
  resnet34_imagenet), in eval mode (its stored BatchNorm statistics), as
  mdistiller's distillers run the teacher;
- nkd, mlkd, dot, ctkd, sdd_dkd, srd: each at its authors' ImageNet settings
  from the same teacher (the functions below name their files); NKD's and
  CTKD's recipes differ from the anchor's (batch 256 and lr 0.1; CTKD also
  120 epochs) and follow their references;
- self_kd, offline_self_kd: the study's own methods (rows 4-6 of its table:
  heads, their loss weights and temperatures, mixup 0.4) on the same recipe,
  offline + self from the same ResNet34.
The recipe, mdistiller's for every r34_r18 config: 100 epochs, SGD momentum
0.9, batch 512, learning rate 0.2 times 0.1 after epochs 30, 60 and 90, no
warm-up, weight decay 1e-4; CRD's and ReviewKD's configs halve the batch and
the rate (256, 0.1). Data: torchvision's RandomResizedCrop(224) + flip for
training, Resize(256) + CenterCrop(224) for evaluation (mdistiller's
dataset/imagenet.py), no rotation; ResNets in torchvision's layout
(config.stem 'auto'). Student and teacher compute in bfloat16 on GPUs and
TPUs, float32 on CPUs ('auto'); parameters, BatchNorm statistics and losses
stay float32 (mdistiller trains in float32).
"""
from configs import baseline
from configs import ctkd
from configs import dot
from configs import mlkd
from configs import nkd
from configs import offline_kd
from configs import offline_self_kd
from configs import sdd_dkd
from configs import self_kd
from configs import srd
from kdjax import study

TEACHER = 'resnet34_imagenet'


def _kd(config):
  # KD.TEMPERATURE 1, CE_WEIGHT 0.5, KD_WEIGHT 0.5; mdistiller's kd_loss sums the
  # KL over classes and averages over the batch.
  config.ce_weight, config.kd_weight, config.kd_temperature = 0.5, 0.5, 1.0
  config.kd_reduction = 'batchmean'


def _nkd(config):
  # cls_KD configs/distillers/imagenet/res34_distill_res18_img.py: NKDLoss temp
  # 1, gamma 1.5; its mmcls recipe (resnet18_8xb32_in1k.py, imagenet_bs256):
  # batch 256, lr 0.1.
  config.nkd_temperature, config.nkd_gamma = 1.0, 1.5
  config.batch_size, config.learning_rate = 256, 0.1


def _mlkd(config):
  # Multi-Level-Logit-Distillation configs/imagenet/r34_r18/kd_ours.yaml: T 1,
  # CE 0.5, KD 0.5, lr 0.1 (batch 512).
  config.kd_temperature, config.ce_weight, config.kd_weight = 1.0, 0.5, 0.5
  config.learning_rate = 0.1


def _dot(config):
  # mdistiller configs/imagenet/r34_r18/dot.yaml: KD (T 1, CE 0.5, KD 0.5), DOT
  # delta 0.09.
  _kd(config)
  config.dot_delta = 0.09


def _ctkd(config):
  # CTKD scripts/run_imagenet_distill.sh: its own recipe, 120 epochs at batch
  # 256, lr 0.1 decayed at 30, 60, 90, weight decay 1e-4; -r 1 -a 1 (CE 1,
  # KD 1), the reversal's cosine over 5 epochs.
  config.num_epochs, config.batch_size, config.learning_rate = 120, 256, 0.1
  config.ce_weight, config.kd_weight = 1.0, 1.0
  config.ctkd_lambda_epochs = 5


def _sdd_dkd(config):
  # SDD-CVPR2024 configs/imagenet/r34_r18/sdd_dkd.yaml: DKD CE 1, beta 0.5, T 1,
  # warm-up 1 (alpha cfg.py's 1), regions M [1,2]. Its SOLVER.BATCH_SIZE 4 is
  # not a recipe (lr 0.2 is batch 512's): the anchor's batch 512 stays.
  config.dkd_alpha, config.dkd_beta, config.dkd_temperature = 1.0, 0.5, 1.0
  config.dkd_warmup_epochs = 1
  config.sdd_scales = (1, 2)


def _crd(config):
  # crd.yaml: batch 256, lr 0.1; CRD's loss at mdistiller's defaults
  # (configs/default.py's crd_* fields).
  config.batch_size, config.learning_rate = 256, 0.1


def _reviewkd(config):
  # reviewkd.yaml: batch 256, lr 0.1, weight 1, a 1-epoch warm-up, the
  # student's stages before their last ReLU (STU_PREACT True).
  config.batch_size, config.learning_rate = 256, 0.1
  config.reviewkd_weight, config.reviewkd_warmup_epochs = 1.0, 1
  config.reviewkd_student_preact = True


def _dkd(config):
  # dkd.yaml: CE 1, alpha 1 (cfg.py's), beta 0.5, T 1, a 1-epoch warm-up.
  config.dkd_alpha, config.dkd_beta, config.dkd_temperature = 1.0, 0.5, 1.0
  config.dkd_warmup_epochs = 1


# Each row: (its CIFAR-100 config with the ImageNet teacher, its changes).
_ROWS = {
    'baseline': (baseline.get_config, None),
    'kd': (lambda: offline_kd.get_config(TEACHER), _kd),
    'at': (lambda: baseline.distilled('at', TEACHER), None),  # AT: weight 1000, p 2
    'crd': (lambda: baseline.distilled('crd', TEACHER), _crd),
    'reviewkd': (lambda: baseline.distilled('reviewkd', TEACHER), _reviewkd),
    'dkd': (lambda: baseline.distilled('dkd', TEACHER), _dkd),
    'nkd': (lambda: nkd.get_config(TEACHER), _nkd),
    'mlkd': (lambda: mlkd.get_config(TEACHER), _mlkd),
    'dot': (lambda: dot.get_config(TEACHER), _dot),
    'ctkd': (lambda: ctkd.get_config(TEACHER), _ctkd),
    'sdd_dkd': (lambda: sdd_dkd.get_config(TEACHER), _sdd_dkd),
    # KD_SRRL train_imagenet_distillation.py: the anchor's recipe, weights 1.
    'srd': (lambda: srd.get_config(TEACHER), None),
    'self_kd': (self_kd.get_config, None),
    'offline_self_kd': (lambda: offline_self_kd.get_config(TEACHER), None),
}
assert set(_ROWS) == {row.name for row in study.IMAGENET_ROWS}


def get_config(arg=None):
  if arg not in _ROWS:
    raise ValueError(f'Name a row after the config file, one of {list(_ROWS)}: '
                     'configs/imagenet.py:kd, for example.')
  make, change = _ROWS[arg]
  config = make()
  config.dataset = 'imagenet2012'
  config.rotation_degrees = 0.0
  if arg == 'kd':
    config.mixup_alpha = 0.0  # mdistiller mixes no batch; the study's KD rows do
  config.dtype = config.teacher_dtype = 'auto'
  config.teacher_bn = 'running'
  config.num_epochs = 100
  config.batch_size = 512
  config.learning_rate = 0.2
  config.schedule = 'step'
  config.decay_epochs = (30, 60, 90)
  config.decay_rate = 0.1
  config.warmup_epochs = 0.0
  config.weight_decay = 1e-4
  config.momentum = 0.9
  # An epoch is 2,502 steps at batch 512: a preempted run loses at most 1,000.
  config.checkpoint_every_steps = 1000
  if change:
    change(config)
  return config
