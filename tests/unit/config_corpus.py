"""A corpus of broken (and a few valid) config directories, one per kind of problem.

Each case is ``{relative path: text or bytes}`` loaded with a fixed credential scope and,
for the hostile cases, small limits. ``golden.json`` holds what the loader reported for each
case when the ruamel-based loader was the only one (``python -m tests.unit.config_corpus``
rewrites it); the corpus test holds every loader to it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from daemon.config import ConfigInvalid, DesiredState, YamlLimits
from daemon.config.loader import ConfigFiles, config_files
from daemon.credential_scope import CredentialScope
from tests.unit.test_config_loader import COMEDY, GOOD, VID, VID2

GOLDEN = Path(__file__).with_name("config_corpus.json")
SCOPE = CredentialScope(env_prefixes=("VENUE_", "TESTPROV_"), secrets_dir=Path("/run/secrets"))
SMALL = YamlLimits(max_file_bytes=2048, max_depth=8, max_nodes=200)


def _venue(old: str, new: str, *, count: int = 1) -> dict[str, str | bytes]:
    assert old in GOOD, old
    return {"venues/laugh.yaml": GOOD.replace(old, new, count),
            "templates/comedy.yaml": COMEDY}


def _raw_venue(text: str | bytes) -> dict[str, str | bytes]:
    return {"venues/v.yaml": text, "templates/comedy.yaml": COMEDY}


def _template(old: str, new: str) -> dict[str, str | bytes]:
    assert old in COMEDY, old
    return {"venues/laugh.yaml": GOOD, "templates/comedy.yaml": COMEDY.replace(old, new)}


_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
    for i in range(8))

CASES: dict[str, dict[str, str | bytes]] = {
    "valid": _venue("", ""),
    "valid_yaml12_scalars": _venue("    options:\n      list_id: abc\n",
                                   "    options:\n      list_id: 'yes'\n      batch_limit: 0o17\n"),
    "valid_underscored_int": _venue("      list_id: abc\n",
                                    "      list_id: abc\n      batch_limit: 1_000\n"),
    "valid_tombstone": _raw_venue(f"venue: {{id: {VID}, name: Gone}}\nintegrations:\n"
                                  "  - {provider: uninstalled, removed: true}\n"),
    "valid_aliases": _venue("      customer: {cron: \"0 3 * * *\", lane: LOW}\n",
                            "      customer: *sched\n").__or__(
        {"venues/laugh.yaml": GOOD.replace(
            "customer: {cron: \"0 * * * *\", direction: both}",
            "customer: &sched {cron: \"0 * * * *\", direction: both}").replace(
            "      customer: {cron: \"0 3 * * *\", lane: LOW}\n", "      customer: *sched\n")}),
    # --- syntax ---
    "syntax_unclosed_flow": _venue("{cron: \"*/15 * * * *\", lane: HIGH, on_delete: archive}",
                                   "{cron: \"*/15 * * * *\", lane: HIGH"),
    "syntax_unclosed_quote": _venue("\"0 3 * * *\"", "\"0 3 * * *"),
    "syntax_bad_indent": _venue("  name: The Laugh Cellar\n", "   name: The Laugh Cellar\n"),
    "syntax_tab": _venue("  name: The Laugh Cellar\n", "\tname: The Laugh Cellar\n"),
    "syntax_colon_value": _venue("name: The Laugh Cellar", "name: The: Laugh: Cellar"),
    "syntax_bad_escape": _venue("name: The Laugh Cellar", "name: \"The \\q Cellar\""),
    "syntax_two_documents": _raw_venue(GOOD + "---\nvenue: {}\n"),
    "syntax_stray_dash": _venue("integrations:\n", "integrations:\n- \n  -x: [\n"),
    "syntax_unclosed_sequence": _raw_venue("a: [1\n"),
    "syntax_alias_undefined": _venue("lane: LOW", "lane: *nowhere"),
    "syntax_block_scalar_bad": _venue("name: The Laugh Cellar", "name: |x\n  text"),
    "syntax_only_comment": _raw_venue("# nothing here\n"),
    "syntax_empty": _raw_venue(""),
    "syntax_list_root": _raw_venue("- a\n- b\n"),
    "syntax_scalar_root": _raw_venue("just text\n"),
    "syntax_not_utf8": _raw_venue(b"venue:\n  name: caf\xe9\n"),
    "syntax_bom": _raw_venue("\ufeff" + GOOD),
    "template_syntax": _template("  product:\n", "  product\n"),
    # --- YAML that syncd refuses ---
    "dup_key": _venue("  timezone: America/Chicago\n",
                      "  timezone: America/Chicago\n  name: Again\n"),
    "dup_key_as_text": _raw_venue("1: a\n'1': b\n"),
    "dup_key_nested": _venue("      list_id: abc\n", "      list_id: abc\n      list_id: d\n"),
    "merge_key": _venue("    options:\n      list_id: abc\n",
                        "    options:\n      <<: {list_id: abc}\n"),
    "complex_key": _venue("  timezone: America/Chicago\n",
                          "  timezone: America/Chicago\n  ? [a, b]\n  : c\n"),
    "null_key": _venue("  timezone: America/Chicago\n", "  timezone: America/Chicago\n  ~: c\n"),
    "python_tag": _venue("list_id: abc", "list_id: !!python/object/apply:os.system ['true']"),
    "custom_tag": _venue("list_id: abc", "list_id: !secret abc"),
    "binary": _venue("list_id: abc", "list_id: !!binary aGVsbG8="),
    "set_tag": _venue("list_id: abc", "list_id: !!set {a, b}"),
    "nan": _venue("list_id: abc", "list_id: .nan"),
    "inf": _venue("list_id: abc", "list_id: -.inf"),
    "timestamp_text": _venue("list_id: abc", "list_id: 2024-05-01"),
    "explicit_str_tag": _venue("list_id: abc", "list_id: !!str 12"),
    "explicit_int_tag_bad": _venue("list_id: abc", "list_id: !!int abc"),
    "float_option": _venue("list_id: abc", "list_id: abc\n      batch_limit: 1.5"),
    "octal_like": _venue("list_id: abc", "list_id: abc\n      batch_limit: 010"),
    "hex": _venue("list_id: abc", "list_id: abc\n      batch_limit: 0x1F"),
    "yaml11_bool": _venue("enabled: false", "enabled: no"),
    "sexagesimal": _venue("list_id: abc", "list_id: abc\n      batch_limit: 1:30"),
    # --- hostile YAML (with SMALL limits) ---
    "hostile_laughs": _raw_venue(_LAUGHS),
    "hostile_deep_flow": _raw_venue("a: " + "[" * 20 + "]" * 20 + "\n"),
    "hostile_deep_block": _raw_venue("".join("  " * i + f"k{i}:\n" for i in range(12))
                                     + "  " * 12 + "v\n"),
    "hostile_very_deep": _raw_venue("a: " + "[" * 1500 + "]" * 1500 + "\n"),
    "hostile_depth_at_cap": _raw_venue("a: " + "[" * 6 + "1" + "]" * 6 + "\n"),
    "hostile_depth_over_cap": _raw_venue("a: " + "[" * 7 + "1" + "]" * 7 + "\n"),
    "hostile_nodes_at_cap": _raw_venue("a: [" + ", ".join(["1"] * 197) + "]\n"),
    "hostile_nodes_over_cap": _raw_venue("a: [" + ", ".join(["1"] * 198) + "]\n"),
    "hostile_alias_at_cap": _raw_venue("a: &a [" + ", ".join(["1"] * 97) + "]\nb: *a\n"),
    "hostile_alias_over_cap": _raw_venue("a: &a [" + ", ".join(["1"] * 98) + "]\nb: *a\n"),
    "hostile_recursive_alias": _raw_venue("a: &a {b: [*a]}\n"),
    "hostile_big_file": _raw_venue(GOOD + "#" * 4096 + "\n"),
    "hostile_file_at_cap": _raw_venue("a: b\n" + "#" * 2042 + "\n"),
    "hostile_many_nodes": _raw_venue("a: [" + ", ".join(["1"] * 300) + "]\n"),
    "hostile_in_template": {"venues/laugh.yaml": GOOD, "templates/comedy.yaml": _LAUGHS},
    # --- wrong types ---
    "type_uuid": _venue(f"id: {VID}", "id: not-a-uuid"),
    "type_name_list": _venue("name: The Laugh Cellar", "name: [a, b]"),
    "type_enabled": _venue("enabled: false", "enabled: maybe"),
    "type_lane": _venue("lane: LOW", "lane: URGENT"),
    "type_direction": _venue("direction: both", "direction: sideways"),
    "type_integrations_map": _raw_venue(f"venue: {{id: {VID}, name: X}}\n"
                                        "integrations: {provider: testprov}\n"),
    "type_schedules_list": _venue("      customer: {cron: \"0 3 * * *\", lane: LOW}\n",
                                  "      - customer\n"),
    "type_credentials_number": _venue("credentials: oauth", "credentials: 5"),
    "type_options_int": _venue("list_id: abc", "list_id: abc\n      batch_limit: many"),
    "type_environment": _venue("environment: sandbox", "environment: staging"),
    "type_timezone": _venue("America/Chicago", "Mars/Olympus"),
    "type_venue_scalar": _raw_venue("venue: 5\nintegrations: []\n"),
    "unicode_before_problem": _raw_venue(f"venue: {{id: {VID}, name: Café Münchën ☕, "
                                         "colour: red}\nintegrations: []\n"),
    "astral_before_problem": _raw_venue(f"venue: {{id: {VID}, name: \"🎭🎭 Stage\", "
                                        "timezone: Nowhere/Land}\nintegrations: []\n"),
    "unicode_syntax": _raw_venue("venue: {name: \"Café 🎭\", id: [}\n"),
    "directive_yaml11": _raw_venue("%YAML 1.1\n---\n" + GOOD.replace("enabled: false",
                                                                      "enabled: no")),
    # --- unknown and missing keys ---
    "unknown_top": _venue("integrations:\n", "colour: red\nintegrations:\n"),
    "unknown_venue": _venue("  timezone: America/Chicago\n",
                            "  timezone: America/Chicago\n  colour: red\n"),
    "unknown_integration": _venue("    environment: sandbox\n",
                                  "    environment: sandbox\n    colour: red\n"),
    "unknown_schedule": _venue("lane: LOW", "lane: LOW, colour: red"),
    "unknown_option": _venue("list_id: abc", "list_id: abc\n      colour: red"),
    "unknown_mapping_key": _venue("      template: comedy\n",
                                  "      template: comedy\n      colour: red\n"),
    "missing_venue": _raw_venue("integrations: []\n"),
    "missing_id": _venue(f"  id: {VID}\n", ""),
    "missing_provider": _venue("  - provider: testoauth\n", "  - \n"),
    "missing_cron": _venue("{cron: \"0 3 * * *\", lane: LOW}", "{lane: LOW}"),
    # --- cron, credentials, scope ---
    "bad_cron": _venue("\"0 3 * * *\"", "\"0 3 * *\""),
    "bad_cron_range": _venue("\"0 3 * * *\"", "\"61 3 * * *\""),
    "literal_secret": _venue("api_key: env:TESTPROV_KEY", "api_key: sk_live_abcdef123456"),
    "bad_env_ref": _venue("api_key: env:TESTPROV_KEY", "api_key: env:"),
    "scope_env": _venue("api_key: env:TESTPROV_KEY", "api_key: env:OTHER_KEY"),
    "scope_reserved_env": _venue("api_key: env:TESTPROV_KEY", "api_key: env:SYNCD_DATABASE_URL"),
    "scope_file": _venue("file:/run/secrets/testprov", "file:/etc/passwd"),
    "scope_file_dotdot": _venue("file:/run/secrets/testprov", "file:/run/secrets/../shadow"),
    "unknown_credential": _venue("api_key: env:TESTPROV_KEY",
                                 "api_key: env:TESTPROV_KEY\n      colour: env:TESTPROV_C"),
    "missing_credential": _venue("      api_key: env:TESTPROV_KEY\n", ""),
    "oauth_not_used": _venue("      api_key: env:TESTPROV_KEY\n", "      api_key: oauth\n"),
    "oauth_missing": _venue("credentials: oauth", "credentials: {token: env:VENUE_T}"),
    # --- plugins: providers, entities, directions, mappings ---
    "unknown_provider": _venue("provider: testoauth", "provider: nosuch"),
    "provider_twice": _venue("provider: testoauth", "provider: testprov"),
    "entity_unsupported": _venue("      customer: {cron: \"0 3 * * *\", lane: LOW}\n",
                                 "      transaction: {cron: \"0 3 * * *\"}\n"),
    "direction_unsupported": _venue("lane: HIGH, on_delete", "direction: pull, on_delete"),
    "on_delete_unsupported": _venue("on_delete: archive", "on_delete: explode"),
    "override_unknown_target": _venue("first: null", "nickname: customer.nick"),
    "override_bad_transform": _venue("source: {const: ticketing}",
                                     "source: {from: x.y, transforms: [shout]}"),
    "override_bad_rule": _venue("source: {const: ticketing}", "source: {colour: red}"),
    "unknown_template": _venue("template: comedy", "template: tragedy"),
    "template_required_unmapped": _venue("first: null", "email: null"),
    "duplicate_venue_id": {"venues/a.yaml": GOOD, "venues/b.yaml": GOOD,
                           "templates/comedy.yaml": COMEDY},
    # --- templates ---
    "template_unknown_provider": _template("provider: testprov", "provider: nosuch"),
    "template_unknown_target": _template("price: event.price", "cost: event.price"),
    "template_unknown_entity_key": _template("  product:\n", "  widget:\n"),
    "template_unsupported_entity": _template("  product:\n", "  transaction:\n"),
    "template_unknown_key": _template("venue_type: comedy_club\n",
                                      "venue_type: comedy_club\ncolour: red\n"),
    "template_missing_name": _template("name: comedy\n", ""),
    "template_twice": {"venues/laugh.yaml": GOOD, "templates/comedy.yaml": COMEDY,
                       "templates/comedy2.yaml": COMEDY},
    "template_two_defaults": {"venues/laugh.yaml": GOOD,
                              "templates/comedy.yaml": COMEDY + "default: true\n",
                              "templates/other.yaml": COMEDY.replace("name: comedy",
                                                                     "name: other")
                              + "default: true\n"},
    "template_rules_unknown": _template("mappings:\n", "validation_rules:\n  product:\n"
                                        "    required: [title, colour]\nmappings:\n"),
    "template_bad_transform": _template("transforms: [lowercase, strip]",
                                        "transforms: [lowercase, nope]"),
    "template_list_root": _template(COMEDY, "- a\n"),
    # --- several problems in several files ---
    "many": {"venues/a.yaml": GOOD.replace("lane: LOW", "lane: NOW"),
             "venues/b.yaml": GOOD.replace(VID, VID2).replace("\"0 3 * * *\"", "\"x\""),
             "venues/c.yaml": "a: [1\n", "templates/comedy.yaml": COMEDY},
}

#: Cases loaded with the small limits (the others with the defaults).
HOSTILE = frozenset(name for name in CASES
                    if name.startswith("hostile_") and name != "hostile_very_deep")


def write_case(root: Path, case: str) -> Path:
    for name, text in CASES[case].items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    (root / "venues").mkdir(exist_ok=True)
    return root


def limits_for(case: str) -> YamlLimits:
    return SMALL if case in HOSTILE else YamlLimits()


def outcome(result: DesiredState | ConfigInvalid, root: Path) -> dict[str, Any]:
    """What a user sees of a load, with file names relative to the config directory."""
    if isinstance(result, ConfigInvalid):
        return {"problems": [{**p.as_dict(), "file": str(Path(p.file).relative_to(root)),
                              "hint": p.hint.replace(f"{root}/", "")}
                             for p in result.problems]}
    return {"integrations": sorted(
        [str(d.venue_id), d.provider, d.spec_hash, d.template] for d in result.integrations),
        "tombstones": sorted([str(t.venue_id), t.provider] for t in result.tombstones),
        "templates": sorted([t.provider, t.name, t.spec_hash] for t in result.templates)}


def files_for(root: Path, case: str) -> ConfigFiles:
    return config_files(root, limits_for(case))


def _record() -> None:  # pragma: no cover - rewrites the golden file
    import tempfile

    from daemon.config import load_config_files
    from daemon.config.testing import SmallPlugin
    from daemon.plugins import load_plugins

    plugins = load_plugins([], extra=[("small", SmallPlugin())])
    out: dict[str, Any] = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            root = write_case(Path(tmp) / "config", case)
            try:
                result: DesiredState | ConfigInvalid = load_config_files(
                    files_for(root, case), plugins, limits=limits_for(case), scope=SCOPE)
            except ConfigInvalid as exc:
                result = exc
            out[case] = outcome(result, root)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(out)} cases written to {GOLDEN}", file=sys.stderr)


if __name__ == "__main__":
    _record()
