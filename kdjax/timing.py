"""Time: how kdjax measures it (a median of waited-for calls) and prints it."""
import statistics
import time
from typing import Any, Callable, Tuple


def format_duration(seconds: float) -> str:
  """'H:MM:SS', as the epoch line's ETA and the report's wall times read."""
  minutes, seconds = divmod(int(round(seconds)), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}:{minutes:02d}:{seconds:02d}'


def timed(fn: Callable[[], Any]) -> Tuple[float, Any]:
  """(seconds, result) of one call of `fn`."""
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def median_seconds(fn: Callable[[], Any], warmup: int, repeats: int,
                   wait: Callable[[Any], Any]) -> float:
  """Median wall time of `repeats` calls of `fn` after `warmup` untimed ones;
  `wait(result)` blocks until a call's work is done (asynchronous runtimes)."""
  for _ in range(warmup):
    wait(fn())
  return statistics.median(timed(lambda: wait(fn()))[0] for _ in range(repeats))
