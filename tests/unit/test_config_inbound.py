"""Inbound mappings in venue and template files: stored beside the outbound rules, and
every problem located at its file, line and column."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daemon.config import ConfigInvalid, ConfigProblem, DesiredState, load_config
from daemon.errors import SyncdError
from daemon.plugins import Plugins, load_plugins

VID = "6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01"

VENUE = f"""\
venue:
  id: {VID}
  name: The Laugh Cellar
integrations:
  - provider: mailchimp
    credentials:
      api_key: env:VENUE_MC_KEY
    schedules:
      customer: {{cron: "0 * * * *", direction: both}}
    mapping:
      inbound:
        customer:
          customer.marketing_opt_in: subscribed
          customer.first_name: {{from: merge_fields.FNAME, transforms: [strip],
                                 policy: newest_wins}}
    options:
      list_id: abc123
  - provider: quickbooks
    credentials: oauth
    schedules:
      customer: {{cron: "0 * * * *", direction: both}}
    mapping:
      template: qb-names
"""

TEMPLATE = """\
name: qb-names
provider: quickbooks
mappings:
  customer:
    DisplayName: customer.full_name
inbound:
  customer:
    customer.first_name: {from: GivenName, policy: provider_wins}
    customer.last_name: {from: FamilyName, policy: provider_wins}
"""


@pytest.fixture
def plugins() -> Plugins:
    return load_plugins(["mailchimp", "quickbooks"])


def _load(tmp_path: Path, plugins: Plugins, venue: str = VENUE, template: str = TEMPLATE,
          writable: tuple[str, ...] | None = None) -> DesiredState:
    root = tmp_path / "config"
    for name, text in (("venues/v.yaml", venue), ("templates/t.yaml", template)):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return load_config(root, plugins, writable=writable)


def _problems(tmp_path: Path, plugins: Plugins, **kwargs: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigInvalid) as caught:
        _load(tmp_path, plugins, **kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def test_inbound_rules_are_stored_beside_the_outbound_ones(tmp_path: Path,
                                                           plugins: Plugins) -> None:
    state = _load(tmp_path, plugins)
    mc = next(i for i in state.integrations if i.provider == "mailchimp")
    assert mc.field_mappings["inbound"] == {"customer": {
        "customer.first_name": {"from": "merge_fields.FNAME", "transforms": [{"name": "strip"}],
                                "policy": "newest_wins"},
        "customer.marketing_opt_in": {"from": "subscribed"}}}
    template = next(t for t in state.templates if t.name == "qb-names")
    assert template.mappings["inbound"]["customer"]["customer.last_name"] == {
        "from": "FamilyName", "policy": "provider_wins"}
    assert set(template.mappings) == {"customer", "inbound"}


def test_each_problem_is_located(tmp_path: Path, plugins: Plugins) -> None:
    venue = VENUE.replace("policy: newest_wins", "policy: loudest")
    [problem] = _problems(tmp_path, plugins, venue=venue)
    assert (problem.line, problem.key) == (
        15, "integrations[0].mapping.inbound.customer.customer.first_name.policy")
    assert "'platform_wins', 'provider_wins' or 'newest_wins'" in problem.message
    venue = VENUE.replace("customer.marketing_opt_in: subscribed",
                          "customer.email: email_address")
    [problem] = _problems(tmp_path, plugins, venue=venue)
    assert (problem.line, problem.column) == (13, 27)
    assert problem.key == "integrations[0].mapping.inbound.customer.customer.email"
    assert "customers.email is not on the allow-list" in problem.message
    assert "SYNCD_INBOUND_WRITABLE" in problem.hint


def test_provider_fields_come_from_the_plugins_catalogue(tmp_path: Path,
                                                         plugins: Plugins) -> None:
    venue = VENUE.replace("customer.marketing_opt_in: subscribed",
                          "customer.marketing_opt_in: opted_in")
    found = _problems(tmp_path, plugins, venue=venue)
    assert len(found) == 1
    problem = found[0]
    assert (problem.line, problem.key) == (13, "integrations[0].mapping.inbound.customer."
                                               "customer.marketing_opt_in")
    assert "mailchimp reports no customer field 'opted_in'" in problem.message
    assert "subscribed" in problem.hint


def test_types_and_the_allow_list_are_checked(tmp_path: Path, plugins: Plugins) -> None:
    venue = VENUE.replace("customer.marketing_opt_in: subscribed",
                          "customer.marketing_opt_in: merge_fields.LNAME")
    found = _problems(tmp_path, plugins, venue=venue)
    assert ["type mismatch" in p.message for p in found] == [True]
    # A column off the allow-list is refused, and allowed once the setting lists it.
    narrow = ("customers.marketing_opt_in",)
    found = _problems(tmp_path, plugins, writable=narrow)  # type: ignore[arg-type]
    keys = sorted(p.key for p in found if p.file.endswith("v.yaml"))
    assert keys[0] == "integrations[0].mapping.inbound.customer.customer.first_name"
    assert any(p.key == "integrations[1].mapping.template" and "template 'qb-names'"
               in p.message for p in found)
    assert _load(tmp_path, plugins, writable=("customers.marketing_opt_in",
                                               "customers.first_name",
                                               "customers.last_name"))


def test_template_inbound_problems_are_located_in_the_template(tmp_path: Path,
                                                               plugins: Plugins) -> None:
    template = TEMPLATE.replace("from: FamilyName", "from: Surname")
    found = _problems(tmp_path, plugins, template=template)
    mine = [p for p in found if p.file.endswith("t.yaml")]
    assert [(p.line, p.key) for p in mine] == [(9, "inbound.customer.customer.last_name.from")]


def test_an_unknown_column_in_the_allow_list_setting_is_one_line(
        tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_INBOUND_WRITABLE", "customers.first_name,customers.password")
    with pytest.raises(SyncdError) as caught:
        _load(tmp_path, plugins)
    message = str(caught.value)
    assert message.startswith("invalid settings: SYNCD_INBOUND_WRITABLE: 'customers.password' "
                              "is not a platform column syncd can write")
    assert "\n" not in message
    monkeypatch.setenv("SYNCD_INBOUND_WRITABLE", '["customers.first_name"]')
    found = _problems(tmp_path, plugins)
    assert any("customers.marketing_opt_in is not on the allow-list" in p.message
               for p in found)
