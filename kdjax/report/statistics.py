"""Whether two rows differ: the difference of their mean best top-1 over seeds,
with Welch's 95 % confidence interval and two-sided p-value (scipy's
ttest_ind with unequal variances). A difference is "separated" when its
interval excludes 0; with fewer than 2 seeds on a side there is no interval,
and no verdict."""
import dataclasses
import math
import statistics
from typing import Optional, Sequence

from scipy import stats

CONFIDENCE = 0.95


@dataclasses.dataclass(frozen=True)
class Difference:
  mean: float  # mean(a) - mean(b)
  low: Optional[float] = None  # the interval, where there is one
  high: Optional[float] = None
  p_value: Optional[float] = None
  why_none: str = ''  # why there is no interval

  @property
  def separated(self) -> Optional[bool]:
    return None if self.low is None else not self.low <= 0 <= self.high

  def cell(self) -> str:
    if self.low is None:
      return f'{self.mean:+.2f} (no verdict: {self.why_none})'
    verdict = 'separated' if self.separated else 'not separated'
    return (f'{self.mean:+.2f} [{self.low:+.2f}, {self.high:+.2f}] p={self.p_value:.2g}, '
            f'{verdict}')


def welch(a: Sequence[float], b: Sequence[float]) -> Difference:
  """mean(a) - mean(b), with Welch's interval and p-value where both have 2 or
  more values that are not all equal."""
  mean = statistics.mean(a) - statistics.mean(b)
  if min(len(a), len(b)) < 2:
    return Difference(mean, why_none=f'{min(len(a), len(b))} seed')
  result = stats.ttest_ind(a, b, equal_var=False)
  if math.isnan(result.pvalue):
    return Difference(mean, why_none='no spread between seeds')
  interval = result.confidence_interval(CONFIDENCE)
  return Difference(mean, float(interval.low), float(interval.high), float(result.pvalue))
