"""User-facing errors: the CLI prints the message as one line and exits non-zero."""


class SqltuneError(Exception):
    """An error caused by the user's input or environment, with a one-line message."""

    exit_code = 2


class DatasetError(SqltuneError):
    """A gold query or a data file is wrong: never the model's fault."""


class UnknownNameError(SqltuneError, KeyError):
    """An unknown registered name (model, dataset, recipe)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Interrupted(SqltuneError):
    """Ctrl-C during a command that kept something: the message says what, and how to continue."""

    exit_code = 130
