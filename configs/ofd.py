"""OFD (Heo et al., ICCV 2019, overhaul of feature distillation) from a frozen teacher.

python main.py --config=configs/ofd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields): mdistiller's engine/cfg.py
OFD: CE 1, weight 0.001, 1x1 connectors (conv + BN) from each student stage
before its last ReLU to the paired teacher stage's (each student stage with the
deepest teacher stage of its grid), margins from the teacher's BN parameters;
the connectors train with the student.
Heads as the study's self row: --config.method=ofd_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('ofd', arg)
