"""The event loop syncd runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under the asyncio API) cuts the per-call cost of the loop and its transports,
which is most of what a worker spends per job between Postgres round trips; asyncpg, httpx
and aiohttp all run on it unchanged. ``SYNCD_EVENT_LOOP`` (or ``choice``) forces either.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from daemon.errors import SyncdError

__all__ = ["LoopChoice", "loop_factory", "run_async"]

T = TypeVar("T")
LoopChoice = Literal["auto", "uvloop", "asyncio"]


def loop_factory(choice: LoopChoice = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    """The constructor of the event loop ``choice`` names; ``auto`` takes uvloop if present.

    ``uvloop`` when it is not installed raises :class:`~daemon.errors.SyncdError` saying so.
    """
    if choice == "asyncio" or (choice == "auto" and importlib.util.find_spec("uvloop") is None):
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError as exc:
        raise SyncdError(
            "SYNCD_EVENT_LOOP=uvloop, but uvloop is not installed (pip install uvloop)"
        ) from exc
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run_async(main: Coroutine[Any, Any, T], choice: LoopChoice = "auto") -> T:
    """Run ``main`` to completion on a new loop of the chosen kind, like :func:`asyncio.run`."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
