from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.reconcile import git_commit

GIT = shutil.which("git")


def git(cwd: Path, *args: str) -> str:
    assert GIT is not None
    return subprocess.run([GIT, *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_no_repository_means_no_commit(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_commit_and_dirty_marker(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "venues").mkdir(parents=True)
    (config / "venues" / "a.yaml").write_text("venue: {}\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid",
        "commit", "-qm", "config")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(config) == head
    (config / "venues" / "a.yaml").write_text("venue: {name: x}\n")
    assert git_commit(config) == f"{head}+dirty"
