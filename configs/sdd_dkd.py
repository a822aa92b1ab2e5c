"""SDD-DKD (Wei et al., CVPR 2024, scale decoupled distillation with DKD), frozen teacher.

python main.py --config=configs/sdd_dkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: shicaiwei123/SDD-CVPR2024 SDD_DKD (mdistiller/distillers/
SDD_DKD.py multi_dkd; DKD at engine/cfg.py's CE 1, alpha 1, beta 8, T 4,
warm-up 20 epochs; M [1,2,4]): DKD on the global, 2 x 2 and 4 x 4 regions'
logits, disagreeing regions weighted twice. No mixup. Method name: sdddkd.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  config = baseline.distilled('sdddkd', arg)
  config.sdd_scales = (1, 2, 4)
  return config
