"""Model registry: `get_model(name, num_classes, **kw)`."""
import flax.linen as nn

from kdjax.models import resnet

_MODELS = {
    'resnet18': resnet.ResNet18,
    'resnet34': resnet.ResNet34,
}


def get_model(name: str, num_classes: int = 100, **kwargs) -> nn.Module:
  """Builds a registered model; kwargs override its fields (width, stage_sizes, dtype, ...)."""
  if name not in _MODELS:
    raise ValueError(f'Unknown model {name!r}. Known models: {sorted(_MODELS)}. '
                     'Set --config.model to one of them.')
  return _MODELS[name](num_classes=num_classes, **kwargs)
