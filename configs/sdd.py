"""SDD (Wei et al., CVPR 2024, scale decoupled distillation, its KD form), frozen teacher.

python main.py --config=configs/sdd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: shicaiwei123/SDD-CVPR2024 SDD_KD (mdistiller/distillers/
KD.py sdd_kd_loss; KD at engine/cfg.py's T 4, CE 0.1, KD 0.9; M [1,2]): the
T^2 KL of the global and the 2 x 2 regions' logits, those where the teacher's
local and global predictions disagree about the label weighted twice. No
mixup. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('sdd', arg)
  config.kd_temperature, config.ce_weight, config.kd_weight = 4.0, 0.1, 0.9
  config.sdd_scales = (1, 2)
  return config
