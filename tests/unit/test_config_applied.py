"""The fingerprint of what a venue file's checks depend on (daemon/config/applied.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from daemon.config import YamlLimits
from daemon.config.applied import dependencies, stored_name
from daemon.config.desired import DesiredTemplate
from daemon.config.testing import SmallPlugin, SmallProvider
from daemon.credential_scope import CredentialScope
from daemon.plugins import Plugins, load_plugins

TEMPLATE = DesiredTemplate("testprov", "comedy", "", "comedy_club",
                           {"product": {"title": {"from": "event.name"}}}, {}, False,
                           "/config/templates/comedy.yaml")


def small() -> Plugins:
    return load_plugins([], extra=[("small", SmallPlugin())])


def deps(plugins: Plugins | None = None, templates: tuple[DesiredTemplate, ...] = (TEMPLATE,),
         limits: YamlLimits | None = None, scope: CredentialScope | None = None) -> str:
    return dependencies(plugins or small(), templates, limits or YamlLimits(), scope)


def test_the_same_inputs_give_the_same_fingerprint_in_another_process() -> None:
    code = ("from daemon.config import YamlLimits\n"
            "from tests.unit.test_config_applied import deps\nprint(deps())\n")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, cwd=Path(__file__).parents[2],
                           env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert other.stdout.strip().splitlines()[-1] == deps()  # logs come first


def test_each_dependency_changes_the_fingerprint() -> None:
    base = deps()
    assert deps(templates=(dataclasses.replace(
        TEMPLATE, mappings={"product": {"title": {"from": "event.description"}}}),)) != base
    assert deps(templates=(dataclasses.replace(TEMPLATE, venue_type="theater"),)) != base
    assert deps(templates=()) != base
    # Where the template lives does not matter, only what it says.
    assert deps(templates=(dataclasses.replace(TEMPLATE, origin="/elsewhere/c.yaml"),)) == base
    assert deps(limits=YamlLimits(max_depth=10)) != base
    assert deps(scope=CredentialScope()) != base
    assert deps(scope=CredentialScope(env_prefixes=("X_",))) != deps(scope=CredentialScope())
    # The inbound allow-list decides which inbound mappings are valid.
    plugins = small()
    assert dependencies(plugins, (TEMPLATE,), YamlLimits(), None,
                        ["customers.phone"]) != dependencies(plugins, (TEMPLATE,), YamlLimits(),
                                                             None, [])

    class Options(BaseModel):
        list_id: str | None = None

    class OtherOptions(SmallProvider):
        def options_model(self) -> type[BaseModel]:
            return Options

    other = load_plugins([], extra=[("small", SmallPlugin(OtherOptions()))])
    same = load_plugins([], extra=[("small", SmallPlugin(SmallProvider()))])
    assert deps(other) != deps(same)


def test_recorded_names_are_relative_to_the_config_directory() -> None:
    assert stored_name("/srv/config/venues/a.yaml") == stored_name("venues/a.yaml") == \
        "venues/a.yaml"
