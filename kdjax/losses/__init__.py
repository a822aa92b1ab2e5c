"""Loss functions: arrays in, scalar (batch mean) out. They never see params or configs.

They live in one module per kind (logits.py, features.py, self_distillation.py,
and a module each for CTKD's temperature, MLKD's levels, SDD's regions and
KDSVD's singular vectors) and are used as kdjax.losses.<name>.
"""
from kdjax.losses.features import attention_transfer
from kdjax.losses.features import contrast_nce
from kdjax.losses.features import feature_l2
from kdjax.losses.features import hierarchical_context
from kdjax.losses.features import mean_squared_error
from kdjax.losses.features import neuron_selectivity
from kdjax.losses.features import overhaul_margin
from kdjax.losses.features import partial_l2
from kdjax.losses.features import probabilistic_transfer
from kdjax.losses.features import rkd_angle
from kdjax.losses.features import rkd_distance
from kdjax.losses.features import similarity_preserving
from kdjax.losses.features import srd
from kdjax.losses.features import variational_information
from kdjax.losses.logits import cross_entropy
from kdjax.losses.logits import dist_inter
from kdjax.losses.logits import dist_intra
from kdjax.losses.logits import dkd
from kdjax.losses.logits import kl_divergence
from kdjax.losses.logits import nkd
from kdjax.losses.logits import soft_cross_entropy
from kdjax.losses.logits import standardize
from kdjax.losses.logits import ttm
from kdjax.losses.logits import wttm
from kdjax.losses.multilevel import mlkd
from kdjax.losses.regions import sdd
from kdjax.losses.regions import sdd_dkd
from kdjax.losses.self_distillation import cs_kd
from kdjax.losses.self_distillation import dlb
from kdjax.losses.self_distillation import ps_kd
from kdjax.losses.self_distillation import tf_kd_reg
from kdjax.losses.self_distillation import uskd
from kdjax.losses.singular import kdsvd
from kdjax.losses.temperature import ctkd
from kdjax.losses.temperature import ctkd_lambda
from kdjax.losses.temperature import ctkd_temperature
