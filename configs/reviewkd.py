"""ReviewKD (Chen et al., CVPR 2021, knowledge review) from a frozen teacher.

python main.py --config=configs/reviewkd.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields): mdistiller's ReviewKD.py
with its CIFAR-100 config's weight 5, ramping over the first 20 epochs; the
fusion blocks' channels and grids come from the student's and the teacher's
stages (each student stage with the deepest teacher stage of its grid), and
they train with the student.
Heads as the study's self row: --config.method=reviewkd_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('reviewkd', arg)
