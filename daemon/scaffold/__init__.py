"""Scaffolding for third-party provider plugins (``syncd plugin init``).

The files under ``template/`` are a complete, working plugin distribution for a made-up
API: provider, client, emulator and the conformance kit's test module. ``render`` copies
them with the plugin's names filled in; the result passes the kit out of the box.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from daemon.errors import SyncdError

__all__ = ["PluginNames", "ScaffoldError", "plugin_names", "render"]

_NAME = re.compile(r"[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")
_SUFFIX = ".tmpl"
_PACKAGE_DIR = "__package__"


class ScaffoldError(SyncdError, ValueError):
    """A plugin name or target directory that cannot be used."""


@dataclass(frozen=True, slots=True)
class PluginNames:
    """The names a plugin is known by."""

    #: Provider name (config, URLs, entry point): ``acme_crm``.
    name: str
    #: Distribution name: ``syncd-acme-crm``.
    dist: str
    #: Import package: ``syncd_acme_crm``.
    package: str
    #: Class-name stem: ``AcmeCrm``.
    cls: str
    #: For people: ``Acme Crm``.
    display: str

    def substitutions(self) -> dict[str, str]:
        return {"{{name}}": self.name, "{{dist}}": self.dist, "{{package}}": self.package,
                "{{Class}}": self.cls, "{{display}}": self.display}


def plugin_names(raw: str) -> PluginNames:
    """Names derived from ``raw`` (lower-case letters, digits, ``-`` or ``_``)."""
    text = raw.strip().lower()
    if text.startswith("syncd-") or text.startswith("syncd_"):
        text = text[len("syncd-"):]
    if not _NAME.fullmatch(text):
        raise ScaffoldError(
            f"invalid plugin name {raw!r}: use lower-case letters and digits, words joined "
            "by '-' or '_', starting with a letter (e.g. acme or acme-crm)")
    name = text.replace("-", "_")
    if keyword.iskeyword(name):
        raise ScaffoldError(f"invalid plugin name {raw!r}: it is a Python keyword")
    words = name.split("_")
    return PluginNames(
        name=name,
        dist="syncd-" + "-".join(words),
        package="syncd_" + name,
        cls="".join(w.capitalize() for w in words),
        display=" ".join(w.capitalize() for w in words),
    )


def _walk(node: Traversable, rel: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    out: list[tuple[tuple[str, ...], str]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            if child.name != "__pycache__":
                out.extend(_walk(child, (*rel, child.name)))
        elif child.name.endswith(_SUFFIX):
            out.append(((*rel, child.name[: -len(_SUFFIX)]), child.read_text("utf-8")))
    return out


def render(names: PluginNames, target: Path) -> list[Path]:
    """Write the plugin distribution into ``target`` (new or empty); returns the files.

    Nothing is written when ``target`` exists and is not empty.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty directory")
    subs = names.substitutions()
    planned: list[tuple[Path, str]] = []
    for rel, template in _walk(files(__package__).joinpath("template")):
        parts = [names.package if p == _PACKAGE_DIR else p for p in rel]
        text = template
        for old, new in subs.items():
            text = text.replace(old, new)
        planned.append((target.joinpath(*parts), text))
    written: list[Path] = []
    for path, text in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
