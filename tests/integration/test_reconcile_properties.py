"""Property: whatever the config and whatever the database held before, apply then plan is
empty."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.config import load_config
from daemon.config.testing import SmallPlugin
from daemon.db import init_connection
from daemon.plugins import load_plugins
from daemon.reconcile import apply_desired, fetch_actual, make_plan

PLUGINS = load_plugins([], extra=[("small", SmallPlugin())])
VENUE_IDS = [uuid.UUID(int=n + 1) for n in range(6)]
NAMES = ["Laugh Lounge", "Concert Hall", "Playhouse Theatre", "Jazz Festival", "Arena"]
CRONS = ["*/15 * * * *", "0 * * * *", "30 2 * * 1-5"]


@st.composite
def integration(draw: st.DrawFn, provider: str) -> str:
    if draw(st.integers(0, 7)) == 0:
        return f"  - provider: {provider}\n    removed: true\n"
    lines = [f"  - provider: {provider}", f"    enabled: {str(draw(st.booleans())).lower()}",
             f"    environment: {draw(st.sampled_from(['production', 'sandbox']))}"]
    if provider == "testprov":
        lines.append("    credentials: {api_key: env:KEY}")
        entities = draw(st.lists(st.sampled_from(["product", "customer"]), unique=True,
                                 min_size=1))
    else:
        lines.append("    credentials: oauth")
        entities = ["customer"]
    lines.append("    schedules:")
    for e in entities:
        lane = draw(st.sampled_from(["CRITICAL", "HIGH", "NORMAL", "LOW"]))
        lines.append(f'      {e}: {{cron: "{draw(st.sampled_from(CRONS))}", lane: {lane}}}')
    if draw(st.booleans()):
        lines.append("    mapping:")
        lines.append("      overrides:")
        lines.append("        customer:")
        lines.append(f"          source: {{const: s{draw(st.integers(0, 3))}}}")
    if draw(st.booleans()):
        lines.append(f"    options: {{list_id: l{draw(st.integers(0, 3))}}}")
    return "\n".join(lines) + "\n"


@st.composite
def configs(draw: st.DrawFn) -> dict[str, str]:
    files = {}
    for i in draw(st.lists(st.integers(0, len(VENUE_IDS) - 1), unique=True, max_size=6)):
        name = draw(st.sampled_from(NAMES))
        providers = draw(st.lists(st.sampled_from(["testprov", "testoauth"]), unique=True))
        body = "".join(draw(integration(p)) for p in providers)
        files[f"v{i}.yaml"] = (f"venue:\n  id: {VENUE_IDS[i]}\n  name: {name} {i}\n"
                               f"  timezone: {draw(st.sampled_from(['UTC', 'Europe/Oslo']))}\n"
                               f"integrations:\n{body or '  []'}\n".replace(":\n  []", ": []"))
    return files


async def apply_then_plan(url: str, files: dict[str, str], prune: bool) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "venues").mkdir()
        for name, text in files.items():
            (root / "venues" / name).write_text(text)
        desired = load_config(root, PLUGINS)
        conn = await asyncpg.connect(url)
        try:
            await init_connection(conn)
            await apply_desired(conn, desired, prune=prune, force=True)
            plan = make_plan(load_config(root, PLUGINS), await fetch_actual(conn),
                             prune=prune)
        finally:
            await conn.close()
    return [f"{c.action} {c.key} {c.fields}" for c in plan.changes]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(files=configs(), prune=st.booleans())
def test_apply_then_plan_is_always_empty(db_url: str, files: dict[str, str],
                                         prune: bool) -> None:
    assert asyncio.run(apply_then_plan(db_url, files, prune)) == []
