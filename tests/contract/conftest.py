"""Contract tests: what the plugins send and the emulators answer, against the providers'
published API descriptions (``../shared/specs``) and documented shapes.

CI places ``shared/`` next to the checkout. Without it these tests skip, saying why, on a
developer's machine, and fail in CI (``CI=true``), where a missing description would
otherwise pass the contract checks unseen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.testing.openapi import load_description, specs_dir
from tests.contract.openapi import OpenAPI

ROOT = Path(__file__).resolve().parents[2]
#: Where the emulators find them too (SYNCD_EMULATOR_SPECS, else shared/specs beside the
#: checkout or one of its parents).
SPECS = specs_dir() or ROOT.parent / "shared" / "specs"


def in_ci() -> bool:
    """True in CI (``CI`` set to true, as CI services and .ci/run's caller do)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require(path: Path) -> Path:
    """``path``; else a skip on a developer's machine and a failure in CI."""
    if not path.is_file():
        message = (f"the providers' API descriptions are not at {path} (set "
                   "SYNCD_EMULATOR_SPECS, or place shared/specs beside the checkout)")
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def square_api() -> OpenAPI:
    """Square's OpenAPI description (loaded once per session)."""
    return OpenAPI(load_description(require(SPECS / "square" / "api.json")), name="square")


@pytest.fixture(scope="session")
def stripe_api() -> OpenAPI:
    """Stripe's OpenAPI description (loaded once per session; the YAML is parsed once per
    version of the file and kept as JSON, see daemon.testing.openapi.load_description)."""
    return OpenAPI(load_description(require(SPECS / "stripe" / "spec3.yaml")), name="stripe")
