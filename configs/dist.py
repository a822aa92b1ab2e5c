"""DIST (Huang et al., NeurIPS 2022, Knowledge Distillation from A Stronger Teacher) from a frozen teacher, in the study's recipe.

python main.py --config=configs/dist.py:resnet50   (or :repvgg_a0)
Add intermediate heads with --config.method=dist_self, mixup as rows 2-6 with
--config.mixup_alpha=0.4. Weights (configs/default.py's): hunto/image_classification_sota's dist_cifar.yaml: CE 1, DIST weight 2, beta 1,
gamma 1, tau 4; the intra-class relation over the global batch.
Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('dist', arg)
