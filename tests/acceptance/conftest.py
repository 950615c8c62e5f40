"""Acceptance tests drive the installed ``syncd`` command in subprocesses, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

SYNCD = str(Path(sys.executable).parent / "syncd")

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def syncd(tmp_path: Path) -> Run:
    """Run ``syncd ARGS`` with a clean environment (plus ``env``); returns the completed process."""

    def run(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
        base.setdefault("SYNCD_DATA_DIR", str(tmp_path / "pgdata"))
        base["SYNCD_LOG_FORMAT"] = "json"
        return subprocess.run(
            [SYNCD, *args], env={**base, **(env or {})}, capture_output=True, text=True,
            timeout=timeout, cwd=cwd or tmp_path, check=False,
        )

    return run
