"""TTM (Zheng & Yang, ICLR 2024, transformed teacher matching) from a frozen teacher.

python main.py --config=configs/ttm.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields): zkxufo/TTM's README
(train_student.py --distill ttm --ttm_l 0.1 -r 1 -b 45; distiller_zoo/ttm.py):
CE 1, 45 x the KL from the teacher's softmax raised to 0.1 and renormalised
to the student's plain softmax (no temperature). Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('ttm', arg)
