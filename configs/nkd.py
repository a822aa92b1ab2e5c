"""NKD (Yang et al., ICCV 2023, normalized knowledge distillation) from a frozen teacher.

python main.py --config=configs/nkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: yzd-v/cls_KD configs/distillers/cifar100/
res34_distill_res18_cifar.py (NKDLoss temp 3, gamma 3.5;
mmcls/models/dis_losses/nkd.py as fixed in October 2023): CE 1, NKD 1. No
mixup (the loss reads each example's label). Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('nkd', arg)
