"""MLKD (Jin et al., CVPR 2023, multi-level logit distillation) from a frozen teacher.

python main.py --config=configs/mlkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: Jin-Ying/Multi-Level-Logit-Distillation's KD_ours
(mdistiller/distillers/KD_ours.py, trainer "ours"; configs/cifar100/ours/*.yaml
leave the KD section at mdistiller/engine/cfg.py's: T 4, CE 0.1, KD 0.9).
Each batch carries every example twice, the second view through RandAugment
(2 of 14 PIL ops) and Cutout; CE 0.1 on both views, 0.9 x the instance, class
and batch alignments at T 4, 3, 5, 2, 6. No mixup. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('mlkd', arg)
  config.kd_temperature, config.ce_weight, config.kd_weight = 4.0, 0.1, 0.9
  return config
