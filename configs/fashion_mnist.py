"""The study's rows on Fashion-MNIST, at a size a 2-core CPU trains in hours.

python main.py --config=configs/fashion_mnist.py:<row>[,full] --workdir=...

<row> is `teacher` or a row of kdjax.study.FASHION_MNIST_ROWS: the study's
(baseline, offline_kd, self_kd, offline_self_kd, offline_kd_no_mixup) and the
self-distillation methods it is compared with (ps_kd, cs_kd, tf_kd_reg, dlb,
uskd). Each of the study's is its CIFAR-100 row config (loss weights,
temperatures, mixup, the teacher's BatchNorm mode, the heads, augmentation);
each compared method is the baseline's config with that method at its
reference's loss settings (configs/default.py), so every row trains with the
same recipe and differs only in its loss (and for cs_kd and dlb in what its
batches hold). Then only these changes:
- dataset: Fashion-MNIST, 28x28x1, normalized with its train split's mean and std;
- the student: ResNet18 at width 8 (0.18 M parameters, against 11.2 M at 64);
- the teacher: ResNet18 at width 16 (0.70 M), trained by kdjax with the
  baseline's recipe, its workdir the teacher (`--config.teacher` names it;
  scripts/reproduce.sh --study=fashion_mnist trains it first);
- 10 epochs instead of 200, with the study's warm restarts divided by the same
  20: 1.5-epoch cycles (30 / 20), a 0.05-epoch warm-up (1 / 20), the rate
  updated 20 times an epoch (once per study epoch), the same peaks and decay.
With `,full` (an accelerator's size, scripts/accelerator_check.sh): the
study's full-width ResNet18 student, a ResNet50 teacher (the study's second
teacher architecture) and 20 epochs, the schedule divided by 10.
"""
import functools

from configs import baseline
from configs import offline_kd
from configs import offline_kd_no_mixup
from configs import offline_self_kd
from configs import self_kd
from kdjax import study

def _compared(method):
  config = baseline.get_config()
  config.method = method
  return config


# Each row's CIFAR-100 config, with the study teacher it names (replaced below).
_ROW_CONFIGS = {
    'teacher': baseline.get_config,
    'baseline': baseline.get_config,
    'offline_kd': lambda: offline_kd.get_config('repvgg_a0'),
    'self_kd': self_kd.get_config,
    'offline_self_kd': lambda: offline_self_kd.get_config('repvgg_a0'),
    'offline_kd_no_mixup': lambda: offline_kd_no_mixup.get_config('repvgg_a0'),
    # The compared self-distillation methods, by config name: their methods.
    **{name: functools.partial(_compared, method) for name, method in (
        ('ps_kd', 'pskd'), ('cs_kd', 'cskd'), ('tf_kd_reg', 'tfkdreg'), ('dlb', 'dlb'),
        ('uskd', 'uskd'))},
}
# Per size: (epochs, the teacher's model and width).
_SIZES = {'': (10, 'resnet18', 16), 'full': (20, 'resnet50', 64)}
STUDY_EPOCHS = 200


def get_config(arg=None):
  row, _, size = (arg or '').partition(',')
  if row not in _ROW_CONFIGS or size not in _SIZES:
    raise ValueError(f'Name a row after the config file, one of {list(_ROW_CONFIGS)}, and '
                     'optionally ",full": configs/fashion_mnist.py:baseline, for example.')
  config = _ROW_CONFIGS[row]()
  epochs, teacher_model, teacher_width = _SIZES[size]
  config.dataset = 'fashion_mnist'
  if row == 'teacher':
    config.model, config.width = teacher_model, teacher_width
  else:
    config.width = study.FASHION_MNIST_SIZES[size]
  scale = STUDY_EPOCHS // epochs
  config.num_epochs = epochs
  config.lr_updates_per_epoch = scale
  config.restart_epochs = config.restart_epochs / scale
  config.warmup_epochs = config.warmup_epochs / scale
  if config.teacher:
    config.teacher = study.FASHION_MNIST_TEACHER
  return config
