"""DIST (Huang et al., NeurIPS 2022, KD from A Stronger Teacher) from a frozen teacher.

python main.py --config=configs/dist.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
hunto/image_classification_sota's dist_cifar.yaml: CE 1, DIST
weight 2, beta 1, gamma 1, tau 4; the intra-class relation over the global batch.
Heads as the study's self row: --config.method=dist_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('dist', arg)
