"""User-facing errors: one line naming the file or field and what was expected (exit code 2)."""


class InputError(ValueError):
  """Bad input from the user: a file, a field or a config key.

  The CLI prints `error: <message>` on one line and exits with code 2.
  """

  def __init__(self, where: str, problem: str):
    self.where = where
    self.problem = problem
    super().__init__(f"{where}: {problem}")


class ConfigError(InputError):
  """A config key that does not exist or a value out of its allowed range."""
