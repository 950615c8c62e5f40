"""Every exception class syncd defines is a ``SyncdError``: one root for callers to catch.

The test imports every module of ``daemon`` and ``plugins`` and looks at the exception classes
each one defines (not those it imports). A class that must not derive from ``SyncdError`` goes
in ``NOT_SYNCD_ERRORS`` with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache
from types import ModuleType

import pytest

import daemon
import plugins
from daemon.errors import SyncdError

#: ``module.Class`` -> why it stays outside ``SyncdError``. Empty today: every class is one.
NOT_SYNCD_ERRORS: dict[str, str] = {}


def _modules() -> list[ModuleType]:
    out: list[ModuleType] = []
    failed: list[str] = []
    for package in (daemon, plugins):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            try:
                out.append(importlib.import_module(info.name))
            except Exception as exc:
                failed.append(f"{info.name}: {type(exc).__name__}: {exc}")
    assert not failed, "modules that cannot be imported:\n" + "\n".join(failed)
    return out


@cache
def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in _modules():
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_the_walk_finds_the_known_exceptions() -> None:
    found = _defined_exceptions()
    # A walk that found nothing would pass the next test vacuously.
    for name in ("daemon.errors.SyncdError", "daemon.sync.engine.SyncError",
                 "daemon.reconcile.plan.DisableRefused", "daemon.provider.ProviderError",
                 "plugins.quickbooks.client._RecordError"):
        assert name in found


def test_every_exception_class_derives_from_syncd_error() -> None:
    outside = sorted(name for name, cls in _defined_exceptions().items()
                     if not issubclass(cls, SyncdError) and name not in NOT_SYNCD_ERRORS)
    assert not outside, (
        "exception classes not derived from daemon.errors.SyncdError (derive them from it, "
        "keeping any builtin base callers catch, or list them in NOT_SYNCD_ERRORS with a "
        "reason): " + ", ".join(outside))


def test_the_allow_list_names_existing_outsiders() -> None:
    found = _defined_exceptions()
    stale = [name for name in NOT_SYNCD_ERRORS
             if name not in found or issubclass(found[name], SyncdError)]
    assert not stale, f"NOT_SYNCD_ERRORS entries to remove: {stale}"


@pytest.mark.parametrize(("name", "builtin"), [
    ("daemon.config._located.YamlError", ValueError),
    ("daemon.config.limits.LimitExceeded", ValueError),
    ("daemon.payloads.PayloadRejected", ValueError),
    ("daemon.plugins.UnknownProvider", KeyError),
    ("daemon.scaffold.ScaffoldError", ValueError),
    ("daemon.scheduler.ticks.InvalidSchedule", ValueError),
    ("daemon.source.reader.UnknownVenue", LookupError),
    ("daemon.sql.QueryParseError", ValueError),
])
def test_builtin_bases_stay_for_existing_except_clauses(
        name: str, builtin: type[Exception]) -> None:
    cls = _defined_exceptions()[name]
    assert issubclass(cls, SyncdError)
    assert issubclass(cls, builtin)


def test_unknown_provider_reads_as_one_line_not_a_key_repr() -> None:
    from daemon.plugins import UnknownProvider

    # KeyError's str() quotes its argument; caught as a SyncdError the CLI prints str(exc).
    assert str(UnknownProvider("nope", ["square"])) == (
        "unknown provider 'nope' (loaded providers: square)")
