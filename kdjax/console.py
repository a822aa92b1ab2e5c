"""What the terminal shows: kdjax's lines, clu's progress notes, and warnings."""
import logging
import os

from absl import logging as absl_logging

_KDJAX = os.path.dirname(os.path.abspath(__file__))
_CLU_PROGRESS = os.path.join('clu', 'platform')  # ReportProgress's notes (steps/s, ETA)


def keep(record: logging.LogRecord) -> bool:
  """kdjax's lines and clu's progress notes, and the warnings of every library
  but orbax's that mid-epoch saves (by design) carry no test accuracy. Orbax
  logs every save and restore, optax and TFDS their internals, at INFO."""
  if record.levelno >= logging.WARNING:
    return 'did not provide metrics' not in record.getMessage()
  path = os.path.abspath(record.pathname)
  return path.startswith(_KDJAX) or _CLU_PROGRESS in path


def show_kdjax_lines() -> None:
  """Keeps the terminal to what `keep` passes (absl's logger carries every library's)."""
  absl_logging.get_absl_logger().addFilter(keep)
