"""VID (Ahn et al., CVPR 2019, variational information distillation) from a frozen teacher.

python main.py --config=configs/vid.py:resnet50   (or :repvgg_a0)
The study's recipe (configs/baseline.py) with this method's loss at its
reference weights (configs/default.py's fields):
mdistiller's engine/cfg.py VID: CE 1, weight 1, eps 1e-5, initial predicted
variance 5, a regressor and per-channel variances for every stage pair (each
student stage with the deepest teacher stage of its grid), trained with the student.
Heads as the study's self row: --config.method=vid_self; mixup as rows 2-6:
--config.mixup_alpha=0.4. Not a row of the study.
"""
from configs import baseline


def get_config(arg=None):
  return baseline.distilled('vid', arg)
