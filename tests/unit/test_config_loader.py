"""Loading and checking config directories against small test providers."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from daemon.config import ConfigInvalid, ConfigProblem, DesiredState, detect_venue_type, load_config
from daemon.config.testing import SmallPlugin, SmallProvider
from daemon.errors import SyncdError
from daemon.plugins import Plugins, load_plugins
from daemon.provider import AuthKind, TemplateSpec

VID = "6f1c2a9e-0b7d-4c1e-9a55-3f2d8b7c1a01"
VID2 = "0d5e7c7a-2a8e-4f55-8f0c-2a1b3c4d5e6f"

GOOD = f"""\
venue:
  id: {VID}
  name: The Laugh Cellar
  timezone: America/Chicago
integrations:
  - provider: testprov
    environment: sandbox
    credentials:
      api_key: env:TESTPROV_KEY
      webhook_secret: file:/run/secrets/testprov
    schedules:
      product: {{cron: "*/15 * * * *", lane: HIGH, on_delete: archive}}
      customer: {{cron: "0 * * * *", direction: both}}
    mapping:
      template: comedy
      overrides:
        customer:
          source: {{const: ticketing}}
          first: null
    options:
      list_id: abc
  - provider: testoauth
    enabled: false
    credentials: oauth
    schedules:
      customer: {{cron: "0 3 * * *", lane: LOW}}
"""

COMEDY = """\
name: comedy
provider: testprov
venue_type: comedy_club
mappings:
  product:
    title: event.name
    price: event.price
  customer:
    email: {from: customer.email, transforms: [lowercase, strip]}
    first: customer.first_name
"""


@pytest.fixture
def plugins() -> Plugins:
    return load_plugins([], extra=[("small", SmallPlugin())])


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    (root / "venues").mkdir(exist_ok=True)
    return root


def load(tmp_path: Path, plugins: Plugins, files: dict[str, str]) -> DesiredState:
    return load_config(write(tmp_path / "config", files), plugins)


def problems(tmp_path: Path, plugins: Plugins, files: dict[str, str]) -> list[ConfigProblem]:
    with pytest.raises(ConfigInvalid) as info:
        load(tmp_path, plugins, files)
    return info.value.problems


def only(found: list[ConfigProblem]) -> ConfigProblem:
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_valid_config_resolves_every_integration(tmp_path: Path, plugins: Plugins) -> None:
    desired = load(tmp_path, plugins, {"venues/laugh.yaml": GOOD,
                                       "templates/comedy.yaml": COMEDY})
    by_provider = {d.provider: d for d in desired.integrations}
    prov = by_provider["testprov"]
    assert prov.venue_type == "comedy_club"
    assert prov.environment == "sandbox"
    assert prov.template == "comedy"
    # The overrides are stored; the template is referenced by name. 'first: null' removes
    # the template's target.
    assert prov.field_mappings == {"customer": {"first": None,
                                                "source": {"const": "ticketing"}}}
    assert prov.options == {"list_id": "abc", "batch_limit": 50}
    assert prov.schedules["product"] == {"cron": "*/15 * * * *", "lane": "HIGH",
                                         "direction": "push", "on_delete": "archive"}
    assert prov.credentials == {"api_key": "env:TESTPROV_KEY",
                                "webhook_secret": "file:/run/secrets/testprov"}
    oauth = by_provider["testoauth"]
    assert oauth.enabled is False
    assert oauth.credentials == {"token": "oauth"}
    assert oauth.template == "testoauth-default"
    assert oauth.schedules == {"customer": {"cron": "0 3 * * *", "lane": "LOW",
                                            "direction": "push"}}
    assert {t.key for t in desired.templates} == {
        ("testprov", "comedy"), ("testprov", "testprov-default"),
        ("testoauth", "testoauth-default")}
    assert len(desired.content_hash) == 64


def test_content_hash_follows_the_bytes(tmp_path: Path, plugins: Plugins) -> None:
    files = {"venues/laugh.yaml": GOOD, "templates/comedy.yaml": COMEDY}
    first = load(tmp_path, plugins, files).content_hash
    assert load(tmp_path, plugins, files).content_hash == first
    files["venues/laugh.yaml"] = GOOD + "# a comment\n"
    assert load(tmp_path, plugins, files).content_hash != first


@pytest.mark.parametrize(("name", "expected"), [
    ("The Laugh Cellar", "comedy_club"), ("Comedy Store", "comedy_club"),
    ("Riverside Music Hall", "music_venue"), ("Concert Barn", "music_venue"),
    ("Old Town Theatre", "theater"), ("Theater 9", "theater"),
    ("Summer Festival", "festival"), ("The Arena", "standard"),
])
def test_venue_type_detected_from_the_name(name: str, expected: str) -> None:
    assert detect_venue_type(name) == expected


def test_template_resolution_order(tmp_path: Path, plugins: Plugins) -> None:
    venue = f"""\
    venue: {{id: {VID}, name: Summer Festival, type: theater}}
    integrations:
      - provider: testprov
        credentials: {{api_key: env:K}}
        schedules: {{product: {{cron: "0 * * * *"}}}}
    """
    theater = COMEDY.replace("name: comedy", "name: stage").replace("comedy_club", "theater")
    # a template for the venue's (declared, not detected) type wins over the default
    desired = load(tmp_path, plugins, {"venues/v.yaml": venue, "templates/t.yaml": theater})
    assert desired.integrations[0].template == "stage"
    # without one, the provider's default
    (tmp_path / "config" / "templates" / "t.yaml").unlink()
    desired = load(tmp_path, plugins, {"venues/v.yaml": venue})
    assert desired.integrations[0].template == "testprov-default"
    # a config template marked default replaces the plugin's as the default
    own_default = COMEDY.replace("venue_type: comedy_club", "default: true")
    desired = load(tmp_path, plugins, {"venues/v.yaml": venue, "templates/d.yaml": own_default})
    assert desired.integrations[0].template == "comedy"
    defaults = {t.name for t in desired.templates if t.is_default}
    assert defaults == {"comedy", "testoauth-default"}


def test_a_config_template_overrides_a_plugin_template_of_the_same_name(
        tmp_path: Path, plugins: Plugins) -> None:
    mine = COMEDY.replace("name: comedy", "name: testprov-default").replace(
        "venue_type: comedy_club\n", "")
    desired = load(tmp_path, plugins, {"templates/mine.yaml": mine})
    (tpl,) = [t for t in desired.templates if t.name == "testprov-default"]
    assert tpl.origin.endswith("mine.yaml")
    assert tpl.is_default is False


def test_tombstone_needs_no_other_keys(tmp_path: Path, plugins: Plugins) -> None:
    venue = f"""\
    venue: {{id: {VID}, name: Gone}}
    integrations:
      - provider: uninstalled-provider
        removed: true
    """
    desired = load(tmp_path, plugins, {"venues/v.yaml": venue})
    assert desired.integrations == ()
    assert [(str(t.venue_id), t.provider) for t in desired.tombstones] == [
        (VID, "uninstalled-provider")]


def test_missing_config_dir_is_an_operator_error(tmp_path: Path, plugins: Plugins) -> None:
    with pytest.raises(SyncdError, match="does not exist"):
        load_config(tmp_path / "nope", plugins)


# --- problems -----------------------------------------------------------------------------


def test_unknown_key_is_located_with_valid_keys(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("  timezone: America/Chicago\n",
                       "  timezone: America/Chicago\n  colour: red\n")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert (Path(p.file).name, p.line, p.column, p.key) == ("laugh.yaml", 5, 3, "venue.colour")
    assert p.message == "unknown key 'colour'"
    assert p.hint == "valid keys here: id, name, type, timezone"
    assert str(p).startswith(f"{p.file}:5:3: venue.colour: unknown key 'colour'")


def test_literal_secret_is_refused_without_echoing_it(tmp_path: Path, plugins: Plugins
                                                      ) -> None:
    bad = GOOD.replace("env:TESTPROV_KEY", "sk_live_51HsecretSECRET")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert (p.line, p.key) == (9, "integrations[0].credentials.api_key")
    assert "literal" in p.message
    assert "env:NAME" in p.hint
    assert "sk_live" not in str(p)
    assert "HsecretSECRET" not in repr(p)


def test_bad_cron_names_the_field(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace('"*/15 * * * *"', '"61 * * * *"')
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[0].schedules.product.cron"
    assert (p.line, p.column) == (12, 23)
    assert "invalid cron expression '61 * * * *'" in p.message
    assert "minute hour" in p.hint


def test_unknown_provider_lists_the_loaded_ones(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("provider: testoauth", "provider: shopify")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[1].provider"
    assert "unknown provider 'shopify' (loaded providers: testoauth, testprov)" in p.message


def test_unknown_mapping_target_lists_valid_targets(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("source: {const: ticketing}", "sorce: {const: ticketing}")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[0].mapping.overrides.customer.sorce"
    assert p.line == 18
    assert p.hint == "valid targets: email, first, last, source, tags"


def test_missing_required_mapping(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("first: null", "email: null")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[0].mapping.overrides.customer.email"
    assert "required contact field 'email' is not mapped" in p.message


def test_template_without_required_field_is_blamed_on_the_template(
        tmp_path: Path, plugins: Plugins) -> None:
    thin = COMEDY.replace("    title: event.name\n", "")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD,
                                          "templates/comedy.yaml": thin}))
    assert p.key == "integrations[0].mapping.template"
    assert "product: required item field 'title' is not mapped (template 'comedy')" \
        in p.message


def test_duplicate_venue_ids_across_files(tmp_path: Path, plugins: Plugins) -> None:
    other = f"venue: {{id: {VID}, name: Copy}}\n"
    p = only(problems(tmp_path, plugins, {"venues/a.yaml": GOOD, "venues/b.yaml": other,
                                          "templates/comedy.yaml": COMEDY}))
    assert Path(p.file).name == "b.yaml"
    assert p.key == "venue.id"
    assert "a.yaml:2:7" in p.hint


def test_direction_the_provider_cannot_do(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("lane: HIGH, on_delete: archive}",
                       "lane: HIGH, on_delete: archive, direction: both}")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[0].schedules.product.direction"
    assert p.message == "testprov cannot both product"
    assert p.hint == "it supports: push"


def test_delete_policy_the_provider_cannot_do(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("on_delete: archive", "on_delete: delete")
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                          "templates/comedy.yaml": COMEDY}))
    assert p.key == "integrations[0].schedules.product.on_delete"
    assert p.message == "testprov cannot delete a deleted product"
    assert p.hint == "it supports: archive, leave"


def test_entity_the_provider_does_not_sync(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace('customer: {cron: "0 3 * * *", lane: LOW}',
                       'transaction: {cron: "0 3 * * *", lane: LOW}')
    found = problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                         "templates/comedy.yaml": COMEDY})
    assert any(p.key == "integrations[1].schedules.transaction"
               and "does not sync transaction" in p.message
               and p.hint == "it syncs: customer, product" for p in found)


def test_options_checked_by_the_provider_model(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("list_id: abc", "list_id: abc\n      batch_limit: lots\n      lst: 1")
    found = problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                         "templates/comedy.yaml": COMEDY})
    assert {(p.key, p.line) for p in found} == {
        ("integrations[0].options.batch_limit", 22), ("integrations[0].options.lst", 23)}
    lst = next(p for p in found if p.key.endswith("lst"))
    assert lst.hint == "valid keys here: list_id, batch_limit"


def test_credentials_checked_against_the_provider(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("api_key: env:TESTPROV_KEY", "apikey: env:TESTPROV_KEY").replace(
        "credentials: oauth", "credentials: {webhook_secret: env:WH}")
    found = problems(tmp_path, plugins, {"venues/laugh.yaml": bad,
                                         "templates/comedy.yaml": COMEDY})
    messages = {(p.key, p.message) for p in found}
    assert ("integrations[0].credentials.apikey",
            "unknown credential 'apikey' for testprov") in messages
    assert ("integrations[0].credentials", "missing credential 'api_key' for testprov") \
        in messages
    assert ("integrations[1].credentials",
            "testoauth connects with OAuth but no credential says oauth") in messages


def test_unknown_template_lists_the_providers_templates(tmp_path: Path, plugins: Plugins
                                                        ) -> None:
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD}))
    assert p.key == "integrations[0].mapping.template"
    assert p.message == "no template 'comedy' for testprov"
    assert p.hint == "templates for it: testprov-default"


def test_every_problem_is_collected_across_files(tmp_path: Path, plugins: Plugins) -> None:
    bad = GOOD.replace("colour", "").replace("provider: testoauth", "provider: shopify") \
        .replace('"0 * * * *"', '"0 * * *"')
    found = problems(tmp_path, plugins, {
        "venues/laugh.yaml": bad, "venues/broken.yaml": "venue: [1\n",
        "venues/list.yaml": "- 1\n", "templates/comedy.yaml": COMEDY,
        "templates/other.yaml": "name: Bad Name\nprovider: testprov\nmappings: {}\n"})
    keys = {(Path(p.file).name, p.key) for p in found}
    assert ("laugh.yaml", "integrations[0].schedules.customer.cron") in keys
    assert ("laugh.yaml", "integrations[1].provider") in keys  # checked despite the cron
    assert ("broken.yaml", "") in keys
    assert ("list.yaml", "") in keys
    assert ("other.yaml", "name") in keys
    assert ("other.yaml", "mappings") in keys
    assert found == sorted(found, key=lambda p: (p.file, p.line, p.column))


def test_template_problems(tmp_path: Path, plugins: Plugins) -> None:
    bad = COMEDY + "validation_rules:\n  customer:\n    required: [nickname]\n"
    bad = bad.replace("title: event.name", "title: {from: event.name, transforms: [shout]}")
    found = problems(tmp_path, plugins, {"templates/comedy.yaml": bad,
                                         "templates/two.yaml": bad.replace(
                                             "venue_type: comedy_club", "default: true")})
    keys = {(Path(p.file).name, p.key, p.message) for p in found}
    assert ("comedy.yaml", "mappings.product.title.transforms",
            "unknown transform 'shout'") in keys
    assert ("comedy.yaml", "validation_rules.customer.required[0]",
            "unknown contact field 'nickname'") in keys
    assert ("two.yaml", "name", "template 'comedy' for testprov is defined twice") in keys


def test_two_defaults_for_one_provider(tmp_path: Path, plugins: Plugins) -> None:
    a = COMEDY.replace("venue_type: comedy_club", "default: true")
    b = a.replace("name: comedy", "name: other")
    p = only(problems(tmp_path, plugins, {"templates/a.yaml": a, "templates/b.yaml": b}))
    assert (Path(p.file).name, p.key) == ("b.yaml", "default")


def test_validation_rules_require_targets(tmp_path: Path, plugins: Plugins) -> None:
    strict = COMEDY + "validation_rules:\n  customer:\n    required: [first]\n"
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD,
                                          "templates/comedy.yaml": strict}))
    assert p.key == "integrations[0].mapping"
    assert "requires 'first' to be mapped" in p.message


def test_broken_plugin_template_does_not_block_the_config(tmp_path: Path) -> None:
    broken = SmallProvider(templates=[TemplateSpec(
        name="bad", provider="testprov", mappings={"product": {"title": 42}})])
    plugins = load_plugins([], extra=[("small", SmallPlugin(
        broken, SmallProvider("testoauth", AuthKind.OAUTH)))])
    desired = load(tmp_path, plugins, {"templates/comedy.yaml": COMEDY})
    assert ("testprov", "bad") not in {t.key for t in desired.templates}


@pytest.mark.parametrize(("old", "new", "key", "fragment"), [
    ("    environment: sandbox\n", "    environment: sandbox\n    enabled: \"yes\"\n",
     "integrations[0].enabled", "valid boolean"),
    ("    environment: sandbox\n", "    environment: staging\n",
     "integrations[0].environment", "'production' or 'sandbox'"),
    ("  name: The Laugh Cellar\n", "  name: 42\n", "venue.name", "valid string"),
    ("  timezone: America/Chicago\n", "  timezone: Mars/Olympus\n", "venue.timezone",
     "unknown time zone"),
    ("schedules:\n      product:", "schedules:\n      tickets: {cron: '0 * * * *'}\n      product:",
     "integrations[0].schedules.tickets", "invalid key 'tickets'"),
])
def test_wrong_types_and_values_are_located_with_hints(
        tmp_path: Path, plugins: Plugins, old: str, new: str, key: str, fragment: str) -> None:
    assert old in GOOD
    found = problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD.replace(old, new, 1),
                                         "templates/comedy.yaml": COMEDY})
    p = only(found)
    assert p.key == key
    assert fragment in p.message
    assert p.hint


@pytest.mark.parametrize(("broken", "line", "column"), [
    # an unclosed flow mapping: reported where the parser gives up, at the next line's colon
    (("      product: {cron: \"*/15 * * * *\", lane: HIGH, on_delete: archive}\n",
      "      product: {cron: \"*/15 * * * *\", lane: HIGH, on_delete: archive\n"), 13, 15),
    # a tab where indentation is expected
    (("  name: The Laugh Cellar\n", "  name: The Laugh Cellar\n\tx: 1\n"), 4, 1),
    # a duplicate key: the second occurrence
    (("  timezone: America/Chicago\n", "  timezone: America/Chicago\n  timezone: UTC\n"), 5, 3),
])
def test_a_yaml_syntax_error_is_reported_at_its_line_and_column(
    tmp_path: Path, plugins: Plugins, broken: tuple[str, str], line: int, column: int,
) -> None:
    old, new = broken
    assert old in GOOD
    p = only(problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD.replace(old, new),
                                          "templates/comedy.yaml": COMEDY}))
    assert (Path(p.file).name, p.line, p.column) == ("laugh.yaml", line, column)
    assert str(p).startswith(f"{p.file}:{line}:{column}:")


def test_a_syntax_error_in_a_template_is_located_in_that_file(tmp_path: Path,
                                                              plugins: Plugins) -> None:
    # An unclosed list: the parser stops at the colon of the next line ("  customer:").
    bad = COMEDY.replace("    price: event.price\n", "    price: [event.price\n")
    found = problems(tmp_path, plugins, {"venues/laugh.yaml": GOOD,
                                         "templates/comedy.yaml": bad})
    located = [(Path(p.file).name, p.line, p.column) for p in found
               if Path(p.file).name == "comedy.yaml"]
    assert located == [("comedy.yaml", 8, 11)]
