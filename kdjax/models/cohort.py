"""Several models trained together, for online (mutual) distillation."""
from typing import Sequence

import flax.linen as nn


class Cohort(nn.Module):
  """Runs every member on the same input. Returns member 0's outputs, with the
  other members' output dicts under `peers`, so whatever reads one model's
  outputs (evaluation, a teacher's logits) reads member 0."""
  members: Sequence[nn.Module]

  def __call__(self, x, train: bool):
    outputs = [member(x, train=train) for member in self.members]
    return {**outputs[0], 'peers': tuple(outputs[1:])}
