"""Errors in what the user asked for: every command prints them on one line and exits 2.

Anything else that goes wrong is a bug, and keeps its traceback.
"""
import sys
from typing import Callable, TypeVar

T = TypeVar('T')


class UserError(Exception):
  """A request kdjax refuses, with what to do instead."""


class TeacherError(UserError, ValueError):
  """A teacher that cannot be used or written, with what to do about it."""


class ConfigError(UserError, ValueError):
  """A config field set to a value outside its domain."""

  def __init__(self, field: str, value, fix: str):
    super().__init__(f'--config.{field}={value}: {fix}')
    self.field = field


class InputError(UserError, RuntimeError):
  """The input pipeline stopped (a worker died); rerunning resumes the run."""


def exit_on_user_error(command: Callable[[], T]) -> T:
  """`command()`, or, if it refuses with a UserError, that error as one
  `error: ...` line on stderr and exit status 2 (what each command line does)."""
  try:
    return command()
  except UserError as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    sys.exit(2)
