"""The settings syncd reads from the environment, found by walking its modules."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

import daemon
import plugins

__all__ = ["all_env_names", "env_names", "settings_models"]


@cache
def settings_models() -> tuple[type[BaseSettings], ...]:
    found: dict[str, type[BaseSettings]] = {}
    for package in (daemon, plugins):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for obj in vars(module).values():
                if (inspect.isclass(obj) and issubclass(obj, BaseSettings)
                        and obj is not BaseSettings and obj.__module__ == module.__name__):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return tuple(found[k] for k in sorted(found))


def env_names(model: type[BaseSettings]) -> dict[str, str]:
    """``{field: the environment variable that sets it}`` (an alias's first name wins)."""
    prefix = str(model.model_config.get("env_prefix", ""))
    out: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            out[name] = first if isinstance(first, str) else prefix + name.upper()
        elif isinstance(alias, str):
            out[name] = alias
        else:
            out[name] = prefix + name.upper()
    return out


def all_env_names() -> list[str]:
    return [var for model in settings_models() for var in env_names(model).values()]
