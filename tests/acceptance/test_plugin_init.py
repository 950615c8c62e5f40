"""``syncd plugin init``: a plugin distribution whose conformance tests pass as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.conftest import Run

PYTHON = sys.executable
RUFF = str(Path(sys.executable).parent / "ruff")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SYNCD_") and k not in ("DATABASE_URL", "PYTEST_ADDOPTS")}


@pytest.mark.slow
def test_scaffolded_plugin_passes_the_kit_out_of_the_box(syncd: Run, tmp_path: Path) -> None:
    target = tmp_path / "work" / "syncd-acme-crm"
    result = syncd("plugin", "init", "acme-crm", "--dir", str(target))
    assert result.returncode == 0, result.stderr
    assert "created syncd-acme-crm" in result.stdout

    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "syncd_acme_crm/__init__.py",
        "syncd_acme_crm/client.py",
        "syncd_acme_crm/emulator.py",
        "syncd_acme_crm/provider.py",
        "tests/test_conformance.py",
    ]
    pyproject = (target / "pyproject.toml").read_text()
    assert 'acme_crm = "syncd_acme_crm"' in pyproject
    assert "{{" not in "".join((target / f).read_text() for f in files)

    lint = subprocess.run([RUFF, "check", "."], cwd=target, capture_output=True, text=True,
                          check=False, env=_clean_env())
    assert lint.returncode == 0, lint.stdout + lint.stderr

    tests = subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=target,
        capture_output=True, text=True, check=False, timeout=600, env=_clean_env(),
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout
    assert "failed" not in tests.stdout
    collected = subprocess.run(
        [PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=target, capture_output=True, text=True, check=False, env=_clean_env(),
    ).stdout
    for check in ("test_batching_at_declared_size[customer]", "test_no_duplicate_after_crash",
                  "test_rate_limit_429", "test_webhook_forgeries_refused"):
        assert check in collected


def test_init_refuses_a_non_empty_directory(syncd: Run, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = syncd("plugin", "init", "acme", "--dir", str(target))
    assert result.returncode == 1
    assert "already exists and is not an empty directory" in result.stderr
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("name", ["Acme!", "1acme", "class", "acme--crm", ""])
def test_init_refuses_a_bad_name(syncd: Run, tmp_path: Path, name: str) -> None:
    result = syncd("plugin", "init", name, "--dir", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "invalid plugin name" in result.stderr
    assert not (tmp_path / "out").exists()


def test_init_defaults_to_a_folder_named_after_the_distribution(syncd: Run,
                                                                  tmp_path: Path) -> None:
    result = syncd("plugin", "init", "widgets", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "syncd-widgets" / "syncd_widgets" / "provider.py").is_file()
