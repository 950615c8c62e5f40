"""Where the job handler workers run comes from.

The handler is built by the runtime (:meth:`daemon.runtime.Runtime.job_handler`): the entry
named ``default`` in the entry-point group ``syncd.job_handlers`` is a *factory* called with
the runtime, returning the handler (syncd's own routes webhook processing jobs to the
webhook processor and every other job to the sync engine, both built from that runtime).
``syncd worker --handler module:function`` names a handler itself instead. Nothing is kept
in module state: each runtime builds its own handler once.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from daemon.errors import SyncdError
from daemon.queue.types import JobHandler

if TYPE_CHECKING:
    from daemon.runtime import Runtime

__all__ = ["ENTRY_POINT_GROUP", "HandlerFactory", "NoHandler", "load"]

ENTRY_POINT_GROUP = "syncd.job_handlers"


class NoHandler(SyncdError):
    """No job handler is registered."""


class HandlerFactory(Protocol):
    """The object a ``syncd.job_handlers`` entry point names."""

    def __call__(self, runtime: Runtime) -> JobHandler: ...


def _import(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SyncdError(f"handler {spec!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise SyncdError(f"handler {spec!r} cannot be loaded: {exc}") from None
    if not callable(obj):
        raise SyncdError(f"handler {spec!r} is not callable")
    return obj


def load(spec: str | None, runtime: Runtime) -> JobHandler:
    """The handler to run: ``spec`` (``module:function``, the handler itself) if given, else
    what the ``default`` factory of :data:`ENTRY_POINT_GROUP` builds from ``runtime``;
    :class:`NoHandler` if there is none."""
    if spec:
        handler: JobHandler = _import(spec)
        return handler
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == "default":
            try:
                factory: HandlerFactory = ep.load()
                return factory(runtime)
            except SyncdError:
                raise
            except Exception as exc:
                raise SyncdError(f"job handler entry point {ep.value!r} failed: {exc}") \
                    from None
    raise NoHandler(
        "no job handler is registered: the sync engine registers one through the "
        f"{ENTRY_POINT_GROUP!r} entry point (name 'default'), or pass --handler module:function"
    )
