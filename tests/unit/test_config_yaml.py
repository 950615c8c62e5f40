from __future__ import annotations

import pytest

from daemon.config._yaml import Position, YamlError, parse_yaml
from daemon.config.limits import YamlLimits


def test_positions_of_keys_and_values() -> None:
    doc = parse_yaml("venue:\n  name: Laugh\nintegrations:\n  - provider: square\n")
    assert doc.data == {"venue": {"name": "Laugh"}, "integrations": [{"provider": "square"}]}
    assert doc.key_position(("venue", "name")) == Position(2, 3)
    assert doc.value_position(("venue", "name")) == Position(2, 9)
    assert doc.value_position(("integrations", 0)) == Position(4, 5)
    assert doc.value_position(("integrations", 0, "provider")) == Position(4, 15)
    assert doc.key_position(("integrations", 0)) is None


def test_position_falls_back_to_the_nearest_parent() -> None:
    doc = parse_yaml("venue:\n  name: Laugh\n")
    assert doc.position(("venue", "missing")) == Position(2, 3)
    assert doc.position(("venue", "name"), key=True) == Position(2, 3)
    assert doc.position(("nothing",)) == Position(1, 1)


def test_yaml_12_scalars() -> None:
    doc = parse_yaml("a: [1, 0x1f, true, ~, 1.5, yes, no, '7', 0o17]")
    assert doc.data == {"a": [1, 31, True, None, 1.5, "yes", "no", "7", 15]}


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("a: 1\na: 2\n", 2, 1, "duplicate key 'a'"),
    ("a: [1\n", 2, 1, "invalid YAML"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", 3, 3, "merge keys"),
    ("? [1, 2]\n: x\n", 1, 3, "a mapping key must be a plain value"),
    ("--- a\n--- b\n", 2, 1, "invalid YAML"),
])
def test_bad_yaml_is_located(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(YamlError) as info:
        parse_yaml(text)
    assert info.value.position == Position(line, column)
    assert message in info.value.message


def test_python_tags_are_not_constructed() -> None:
    with pytest.raises(YamlError):
        parse_yaml("a: !!python/object/apply:os.system ['true']\n")


def test_dates_stay_text_and_odd_numbers_are_refused() -> None:
    assert parse_yaml("a: 2024-05-01\n").data == {"a": "2024-05-01"}
    with pytest.raises(YamlError, match="finite"):
        parse_yaml("a: .nan\n")
    with pytest.raises(YamlError, match="binary"):
        parse_yaml("a: !!binary aGVsbG8=\n")


def test_empty_document() -> None:
    assert parse_yaml("").data is None


def test_keys_equal_as_text_are_duplicates() -> None:
    with pytest.raises(YamlError, match="duplicate key '1'"):
        parse_yaml("1: a\n'1': b\n")


@pytest.mark.parametrize(("text", "line", "column", "message"), [
    ("a: [[[[1]]]]\n", 1, 7, "nested more than 4 levels deep"),
    ("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", 2, 9, "more than 12 values once aliases"),
    ("a: &a {b: [*a]}\n", 1, 12, "an alias refers to a node that contains it"),
])
def test_documents_over_the_limits_are_located(text: str, line: int, column: int,
                                               message: str) -> None:
    limits = YamlLimits(max_depth=4, max_nodes=12)
    with pytest.raises(YamlError) as info:
        parse_yaml(text, limits)
    assert info.value.position == Position(line, column)
    assert message in info.value.message
    assert "SYNCD_CONFIG_MAX" in info.value.hint or "alias" in info.value.hint


def test_aliases_within_the_limits_expand() -> None:
    doc = parse_yaml("a: &a [1, 2]\nb: [*a, *a]\n", YamlLimits(max_depth=3, max_nodes=13))
    assert doc.data == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
