"""Model registry: `get_model(name, num_classes, **kw)`."""
import dataclasses
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn

from kdjax.models import cohort
from kdjax.models import repvgg
from kdjax.models import resnet

_MODELS = {
    'resnet18': resnet.ResNet18,
    'resnet34': resnet.ResNet34,
    'resnet50': resnet.ResNet50,
    'repvgg_a0': repvgg.RepVGGA0,
}


NAMES = tuple(_MODELS)  # the models a config can name
# Where a model name takes `stem`: the ResNets, in CIFAR's layout or torchvision's.
STEMS = tuple(resnet.STEMS)
STEM_MODELS = ('resnet18', 'resnet34', 'resnet50')
# get_model(COHORT, members=[(name, kwargs), ...]) builds a cohort.Cohort.
COHORT = 'cohort'


def get_model(name: str, num_classes: int = 100, **kwargs) -> nn.Module:
  """Builds a registered model; kwargs override its fields (width, stage_sizes, dtype, ...).

  COHORT takes `members`, a sequence of (name, kwargs); the remaining kwargs
  (dtype, axis_name) go to every member.
  """
  if name == COHORT:
    members = kwargs.pop('members')
    return cohort.Cohort(tuple(get_model(member, num_classes, **kwargs, **member_kwargs)
                               for member, member_kwargs in members))
  if name not in _MODELS:
    raise ValueError(f'Unknown model {name!r}. Known models: {sorted(_MODELS)}. '
                     'Set --config.model to one of them.')
  cls = _MODELS[name]
  fields = {f.name for f in dataclasses.fields(getattr(cls, 'func', cls))}
  unknown = sorted(set(kwargs) - fields)
  if unknown:
    raise ValueError(f'Model {name!r} does not take {unknown}; it takes '
                     f'{sorted(fields - {"parent", "name"})}.')
  return cls(num_classes=num_classes, **kwargs)


def fixed_stage_count(name: str) -> Optional[int]:
  """How many block counts stage_sizes must give model `name` (RepVGG's stage
  widths are fixed multiples), or None where any count builds (ResNets)."""
  return len(repvgg.A0_WIDTH_MULTIPLIERS) if name == 'repvgg_a0' else None


def inference_form(name: str, kwargs: Dict[str, Any],
                   variables) -> Tuple[Dict[str, Any], Any]:
  """(kwargs, variables) of the fastest eval-mode equivalent of a model: RepVGG
  fused to one conv per block; every other model as it is."""
  if name == 'repvgg_a0':
    return {**kwargs, 'deploy': True}, repvgg.fuse(variables)
  return kwargs, variables
