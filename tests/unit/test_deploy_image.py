"""Containerfile: a multi-stage build of the wheel, a final stage without compilers that runs
``syncd run`` as an unprivileged user, and an ignore file that keeps the rest out.

Building the image needs a container engine; this checks the file itself.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = ROOT / "Containerfile"


def stages() -> list[list[str]]:
    """Instructions (continuation lines joined) per stage, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    out: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(line)
    return out


def instructions(stage: list[str], name: str) -> list[str]:
    return [line[len(name) + 1:].strip() for line in stage
            if line.upper().startswith(name + " ")]


def test_the_wheel_is_built_in_one_stage_and_installed_into_the_next() -> None:
    build, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert any("pip wheel" in run for run in instructions(build, "RUN"))
    assert any(copy.startswith("--from=") for copy in instructions(final, "COPY"))
    # No compiler or build toolchain is installed in the final stage.
    assert not [run for run in instructions(final, "RUN")
                if re.search(r"\b(gcc|g\+\+|clang|build-essential|make|apt-get install)\b",
                             run)]


def test_the_final_stage_runs_syncd_run_as_an_unprivileged_user() -> None:
    final = stages()[-1]
    (user,) = instructions(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    (entrypoint,) = instructions(final, "ENTRYPOINT")
    (cmd,) = instructions(final, "CMD")
    assert json.loads(entrypoint) + json.loads(cmd) == ["syncd", "run"]
    (health,) = instructions(final, "HEALTHCHECK")
    assert "/healthz" in health


def test_the_build_stage_copies_what_the_wheel_needs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", pyproject["project"]["readme"], *wheel["packages"],
              *wheel.get("force-include", {})}
    copied = {part.rstrip("/").removeprefix("./")
              for copy in instructions(stages()[0], "COPY") if not copy.startswith("--")
              for part in copy.split()[:-1]}
    assert needed <= copied, f"not copied into the build stage: {needed - copied}"
    ignore = (ROOT / ".containerignore").read_text()
    allowed = {line[1:].rstrip("/") for line in ignore.splitlines() if line.startswith("!")}
    assert copied <= allowed, f"copied but excluded by .containerignore: {copied - allowed}"


def test_the_ignore_files_keep_secrets_and_local_state_out() -> None:
    ignore = (ROOT / ".containerignore").read_text()
    assert (ROOT / ".dockerignore").read_text() == ignore
    lines = [line.strip() for line in ignore.splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then only what the build copies back in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert not allowed & {".env", ".venv", ".git", "config", "tests"}
