"""ImageNet-1k: the field's ResNet34 -> ResNet18 table, one command per row.

python main.py --config=configs/imagenet.py:<row> --workdir=runs/imagenet/<row> \\
    --config.manual_dir=FOLDER_OF_THE_ILSVRC2012_TARS [--config.data_dir=TFDS_DIR]

<row> is a row of kdjax.study.IMAGENET_ROWS:
- baseline: ResNet18 and cross-entropy;
- kd, at, crd, reviewkd, dkd: mdistiller's configs/imagenet/r34_r18/*.yaml,
  each from torchvision's ResNet34 (python -m kdjax.teachers fetch
  resnet34_imagenet), in eval mode (its stored BatchNorm statistics), as
  mdistiller's distillers run the teacher;
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
from configs import offline_kd
from configs import offline_self_kd
from configs import self_kd
from kdjax import study

TEACHER = 'resnet34_imagenet'


def _kd(config):
  # KD.TEMPERATURE 1, CE_WEIGHT 0.5, KD_WEIGHT 0.5; mdistiller's kd_loss sums the
  # KL over classes and averages over the batch.
  config.ce_weight, config.kd_weight, config.kd_temperature = 0.5, 0.5, 1.0
  config.kd_reduction = 'batchmean'


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
