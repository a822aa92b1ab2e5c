"""KDSVD (Lee et al., ECCV 2018, self-supervised KD using SVD) from a frozen teacher.

python main.py --config=configs/kdsvd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights: mdistiller/distillers/KDSVD.py (engine/cfg.py KDSVD: k 1,
CE 1, weight 1), on the stage pairs (each student stage with the deepest
teacher stage of its grid), the teacher's singular vectors' signs made
canonical. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('kdsvd', arg)
