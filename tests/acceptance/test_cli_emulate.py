"""``syncd emulate``: a Stripe-shaped API a person can curl, stopped cleanly by SIGTERM."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import SYNCD, Run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Emulate:
    """A running ``syncd emulate`` with its output read line by line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._pump, daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in {self.seen}") from None
            if line is None:
                raise AssertionError(f"exited before printing {pattern!r}: {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


@pytest.fixture
def emulate(tmp_path: Path) -> Iterator[tuple[Emulate, int]]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SYNCD_") and k != "DATABASE_URL"}
    env["SYNCD_LOG_FORMAT"] = "json"
    proc = subprocess.Popen(
        [SYNCD, "emulate", "stripe", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    running = Emulate(proc)
    try:
        yield running, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        running.reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_stripe_emulator_can_be_curled_and_stops_on_sigterm(
        emulate: tuple[Emulate, int]) -> None:
    run, port = emulate
    url = run.wait_for(r"listening on (http://\S+)").group(1)
    assert url == f"http://127.0.0.1:{port}"
    key = run.wait_for(r"^\s+(?:api_key|access_token): (\S+)").group(1)
    run.wait_for(r"curl .*/v1/customers")

    with httpx.Client(base_url=url, timeout=10) as http:
        anonymous = http.get("/v1/customers")
        assert anonymous.status_code == 401
        assert "error" in anonymous.json()

        auth = {"Authorization": f"Bearer {key}"}
        created = http.post("/v1/customers", headers=auth,
                            data={"email": "ada@example.com", "name": "Ada Lovelace"})
        assert created.status_code == 200, created.text
        customer = created.json()
        assert customer["object"] == "customer"
        assert customer["id"].startswith("cus_")
        assert customer["email"] == "ada@example.com"

        listed = http.get("/v1/customers", headers=auth)
        assert listed.status_code == 200
        page = listed.json()
        assert page["object"] == "list"
        assert [c["id"] for c in page["data"]] == [customer["id"]]

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=15) == 0
    run.wait_for(r"^stopped$")


def test_unknown_provider_is_one_clear_line(syncd: Run) -> None:
    result = syncd("emulate", "nosuch", "--port", str(_free_port()))
    assert result.returncode == 1
    assert "unknown provider 'nosuch'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_fault_rate_is_refused(syncd: Run) -> None:
    result = syncd("emulate", "stripe", "--error-rate", "1.5")
    assert result.returncode == 2
    assert "between 0 and 1" in result.stderr


def test_port_in_use_is_one_clear_line(syncd: Run) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = syncd("emulate", "stripe", "--port", str(port), timeout=60)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
