"""The one exception hierarchy; every face maps it to exit status 2 and one line."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text, or its class name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RolloutError(Exception):
    """Bad input or an environment the tool cannot work in.

    The message is one line a user can act on; faces print it without a traceback.
    """


class ConfigurationError(RolloutError):
    """Settings, pyproject configuration or command-line flags are wrong."""


class MigrationLoadError(RolloutError):
    """A migration module cannot be imported, or the graph is inconsistent."""


class DeployedStateError(RolloutError):
    """S0 (the deployed state) cannot be resolved: a bad git ref, snapshot or database."""


class DatabaseUnavailableError(RolloutError):
    """A database that the command needs cannot be reached."""
