"""The job handler registry: what ``syncd worker`` runs for each job.

The sync engine registers its handler, either in code::

    from daemon.queue import handlers
    handlers.register(my_handler)

or through the entry-point group ``syncd.job_handlers`` (an entry named ``default`` whose
object is the handler), which ``syncd worker`` loads at start. ``syncd worker --handler
module:function`` names one explicitly. With none, the worker refuses to start: jobs are
never consumed by a handler that does nothing and reports success.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from daemon.errors import SyncdError
from daemon.queue.types import JobHandler

__all__ = ["ENTRY_POINT_GROUP", "NoHandler", "clear", "get", "load", "register"]

ENTRY_POINT_GROUP = "syncd.job_handlers"

_handler: JobHandler | None = None


class NoHandler(SyncdError):
    """No job handler is registered."""


def register(handler: JobHandler, *, replace: bool = False) -> None:
    """Register the job handler. A second registration needs ``replace=True``."""
    global _handler  # noqa: PLW0603 - the registry is process state by design
    if _handler is not None and _handler is not handler and not replace:
        raise ValueError("a job handler is already registered; pass replace=True to replace it")
    _handler = handler


def clear() -> None:
    """Forget the registered handler (tests)."""
    global _handler  # noqa: PLW0603
    _handler = None


def _import(spec: str) -> JobHandler:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SyncdError(f"handler {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
        handler = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise SyncdError(f"handler {spec!r} cannot be loaded: {exc}") from None
    if not callable(handler):
        raise SyncdError(f"handler {spec!r} is not callable")
    return handler  # type: ignore[no-any-return]


def load(spec: str | None = None) -> JobHandler:
    """The handler to run: ``spec`` (``module:function``) if given, else the registered one,
    else the ``default`` entry of :data:`ENTRY_POINT_GROUP`; :class:`NoHandler` if none."""
    if spec:
        handler = _import(spec)
        register(handler, replace=True)
        return handler
    if _handler is not None:
        return _handler
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == "default":
            try:
                handler = ep.load()
            except Exception as exc:
                raise SyncdError(f"job handler entry point {ep.value!r} failed: {exc}") from None
            register(handler)
            return handler  # type: ignore[no-any-return]
    raise NoHandler(
        "no job handler is registered: the sync engine registers one through the "
        f"{ENTRY_POINT_GROUP!r} entry point (name 'default'), or pass --handler module:function"
    )


def get() -> JobHandler | None:
    """The registered handler, if any."""
    return _handler
