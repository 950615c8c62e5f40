"""The event loop syncd runs on: uvloop where it is installed, else asyncio's own.

uvloop (libuv under the asyncio API) cuts the per-call cost of the loop and its transports,
which is most of what a worker spends per job between Postgres round trips; asyncpg, httpx
and aiohttp all run on it unchanged. ``SYNCD_EVENT_LOOP`` (or ``choice``) forces either.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar

from daemon.errors import SyncdError

__all__ = ["LoopChoice", "in_daemon_thread", "loop_factory", "run_async"]

T = TypeVar("T")
P = ParamSpec("P")
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


async def in_daemon_thread(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``func(*args, **kwargs)`` in a daemon thread of its own, awaited.

    Like :func:`asyncio.to_thread`, except that a caller cancelled meanwhile (shutdown) does
    not keep the process alive: the default executor's threads are joined when the loop
    closes and when the interpreter exits, so a long parse (a config of 10,000 venues) still
    running would hold up a prompt exit. Use it for long, side-effect-free work only.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task
            if not loop.is_closed():
                loop.call_soon_threadsafe(settle, None, exc)
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=work, name=f"syncd.{getattr(func, '__name__', 'work')}",
                     daemon=True).start()
    return await future
