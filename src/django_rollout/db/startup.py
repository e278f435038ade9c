"""Start Django and capture the queries it runs (or tries to run) while it starts (A601).

Queries in ``AppConfig.ready()`` or at module import run before and during migrations, against
a schema that may be half-migrated. The capture records each with the user code that issued it;
a query whose connection fails (no database reachable from CI) is recorded too, and a start-up
that dies on it does not stop the check: the app registry is usable once models are loaded.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django_rollout.errors import ConfigurationError
from django_rollout.graph.context import StartupQuery

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class StartupCapture:
    queries: list[StartupQuery] = field(default_factory=list)
    error: str | None = None  # the start-up failed on a query; the check went on
    captured: bool = True  # False when Django was already set up by someone else


def _django_dir() -> str:
    import django

    return os.path.dirname(os.path.abspath(str(django.__file__)))


def _caller(skip: tuple[str, ...]) -> tuple[str | None, int | None]:
    """Return the innermost frame outside Django, this package and the import machinery."""
    for frame in reversed(traceback.extract_stack()):
        name = os.path.abspath(frame.filename)
        if name.startswith(skip) or frame.filename.startswith("<"):
            continue
        return frame.filename, frame.lineno
    return None, None


@contextmanager
def capture_queries(sink: list[StartupQuery]) -> Iterator[None]:
    """Record every query, and every failed connection attempt, made inside the block."""
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    skip = (_django_dir(), _HERE)
    originals: dict[tuple[type, str], Callable[..., Any]] = {
        (CursorWrapper, "execute"): CursorWrapper.execute,
        (CursorWrapper, "executemany"): CursorWrapper.executemany,
        (BaseDatabaseWrapper, "cursor"): BaseDatabaseWrapper.cursor,
    }

    def wrap_execute(original: Callable[..., Any]) -> Callable[..., Any]:
        def execute(self: Any, sql: Any, *args: Any, **kwargs: Any) -> Any:
            path, line = _caller(skip)
            query = StartupQuery(sql=str(sql)[:500], path=path, line=line)
            sink.append(query)
            try:
                return original(self, sql, *args, **kwargs)
            except Exception as exc:
                query.error = _first_line(exc)
                raise

        return execute

    def cursor(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return originals[(BaseDatabaseWrapper, "cursor")](self, *args, **kwargs)
        except Exception as exc:
            path, line = _caller(skip)
            sink.append(
                StartupQuery(
                    sql=f"<connection to database {self.alias!r}>",
                    path=path,
                    line=line,
                    error=_first_line(exc),
                )
            )
            raise

    CursorWrapper.execute = wrap_execute(originals[(CursorWrapper, "execute")])  # type: ignore[method-assign]
    CursorWrapper.executemany = wrap_execute(originals[(CursorWrapper, "executemany")])  # type: ignore[method-assign]
    BaseDatabaseWrapper.cursor = cursor  # type: ignore[method-assign]
    try:
        yield
    finally:
        for (cls, name), original in originals.items():
            setattr(cls, name, original)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def setup_django(settings_module: str | None = None) -> StartupCapture:
    """Configure and start Django, capturing start-up queries; one-line errors on failure."""
    import django
    from django.apps import apps

    if settings_module:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if apps.ready:
        return StartupCapture(captured=False)
    if "" not in sys.path and os.getcwd() not in sys.path:
        # Like manage.py: the project root is importable.
        sys.path.insert(0, os.getcwd())
    name = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not name:
        raise ConfigurationError(
            "no settings: pass --settings mysite.settings or set DJANGO_SETTINGS_MODULE"
        )
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018 - forces the settings module to import
    except Exception as exc:
        raise ConfigurationError(f"cannot import settings {name!r}: {_where(exc)}") from None
    capture = StartupCapture()
    from django.db import DatabaseError

    with capture_queries(capture.queries):
        try:
            django.setup()
        except DatabaseError as exc:
            if not apps.models_ready:
                raise ConfigurationError(f"Django failed to start: {_where(exc)}") from None
            capture.error = _where(exc)
        except Exception as exc:
            raise ConfigurationError(f"Django failed to start: {_where(exc)}") from None
    return capture


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    skip = (_django_dir(), _HERE)
    user = [f for f in frames if not os.path.abspath(f.filename).startswith(skip)]
    where = f" ({user[-1].filename}:{user[-1].lineno})" if user else ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
    return _first_line(exc) + where
