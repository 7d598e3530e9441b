"""`puente kafka up / down` with real broker JVMs: it serves and leaves none behind.

A node killed mid-stream and restarted keeps what it acknowledged: see
tests/fault/test_kafka_failover.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.kafkalocal.cluster import stop_running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def puente(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )


def kafka_pids() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"kafka.Kafka" in cmdline:
            found.add(int(entry.name))
    return found


def gone(pids: set[int], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pids & kafka_pids():
            return True
        time.sleep(0.2)
    return False


def test_up_detached_serves_with_the_admin_credentials_and_down_stops_it(
    tmp_path: Path,
) -> None:
    state = tmp_path / "kafka"
    started = puente(
        "kafka", "up", "--detach", "--port-base", "0", "--state-dir", str(state)
    )
    try:
        assert started.returncode == 0, started.stderr
        connection = json.loads((state / "connection.json").read_text())
        lines = started.stdout.splitlines()
        assert lines[1].startswith(f"bootstrap      {connection['bootstrap']}  (SASL")
        assert lines[2].startswith(f"tls bootstrap  {connection['tls_bootstrap']}")
        env = dict(
            line.split("=", 1) for line in (state / "admin.env").read_text().splitlines()
        )
        assert env["PUENTE_KAFKA_SASL_USERNAME"] == "admin"
        assert oct((state / "admin.env").stat().st_mode & 0o777) == "0o600"
        listed = subprocess.run(
            [sys.executable, "-m", "services", "acl", "apply", "--dry-run"],
            capture_output=True,
            text=True,
            env=os.environ | env,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "already present 0 (dry run: nothing created)" in listed.stdout
        pids = set(connection["pids"])
        assert pids <= kafka_pids()
    finally:
        stopped = puente("kafka", "down", "--state-dir", str(state))
    assert stopped.stdout == "stopped 1 node(s)\n"
    assert gone(pids)
    again = puente("kafka", "down", "--state-dir", str(state))
    assert again.stdout == f"no local Kafka runs in {state.resolve()}\n"


def test_a_killed_kafka_up_takes_its_brokers_with_it(tmp_path: Path) -> None:
    state = tmp_path / "kafka"
    up = subprocess.Popen(
        [sys.executable, "-m", "services", "kafka", "up", "--port-base", "0",
         "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        for line in up.stdout:
            if line.startswith("running"):
                break
        pids = set(json.loads((state / "connection.json").read_text())["pids"])
        assert pids
        assert pids <= kafka_pids()
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=10)
        assert gone(pids), "the broker outlived the killed `puente kafka up`"
    finally:
        up.kill()
        up.wait(timeout=10)
        if up.stdout is not None:
            up.stdout.close()
        stop_running(state)
