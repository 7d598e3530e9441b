"""`puente demo` end to end on its own embedded broker: series move, summary holds."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT

pytestmark = [pytest.mark.smoke, pytest.mark.slow]
DURATION = 15


def totals(port: int) -> dict[str, float]:
    """Sum of every sample per ``puente_*`` series on the router's /metrics."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    response.raise_for_status()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("puente_"):
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums


def scrape_when(
    port: int, ready: str, process: subprocess.Popen[str]
) -> dict[str, float]:
    """Scrape until series ``ready`` is above zero (the demo is publishing)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo ended before publishing"
        try:
            found = totals(port)
        except httpx.HTTPError:
            found = {}
        if found.get(ready, 0) > 0:
            return found
        time.sleep(0.5)
    pytest.fail(f"{ready} never rose above zero")


def demo_env(tmp_path: Path, router_port: int) -> dict[str, str]:
    """A private state dir, free ports, no configured cluster (the demo starts one)."""
    env = {
        **os.environ,
        "PUENTE_STATE_DIR": str(tmp_path / "state"),
        "PUENTE_ROUTER_PORT": str(router_port),
        "PUENTE_GATEWAY_PORT": str(free_port()),
        "PUENTE_GATEWAY_ADMIN_PORT": str(free_port()),
        "PUENTE_AUDIT_PORT": str(free_port()),
        "PUENTE_REFERRALS_PORT": str(free_port()),
        "PUENTE_KAFKA_EMBEDDED_PORT": str(free_port()),
        "COLUMNS": "200",
    }
    for name in (
        "PUENTE_KAFKA_BOOTSTRAP_SERVERS",
        "PUENTE_ROUTER_DEDUPE_PATH",
        "PUENTE_AUDIT_LEDGER_PATH",
        "PUENTE_REFERRALS_DB_PATH",
    ):
        env.pop(name, None)
    return env


def start_demo(env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.demo", *options],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def end(process: subprocess.Popen[str]) -> None:
    """After a failure: SIGTERM first, so the demo stops its embedded broker too."""
    if process.poll() is None:
        process.terminate()
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_the_demo_runs_the_hub_end_to_end_and_ends_with_a_summary(
    tmp_path: Path,
) -> None:
    router_port = free_port()
    process = start_demo(
        demo_env(tmp_path, router_port),
        *("--duration", str(DURATION), "--rate", "40", "--seed", "3"),
    )
    try:
        first = scrape_when(router_port, "puente_deliveries_total", process)
        time.sleep(3)
        second = totals(router_port)
        stdout, stderr = process.communicate(timeout=90)
    finally:
        end(process)

    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    for series in ("puente_events_accepted_total", "puente_deliveries_total"):
        assert second[series] > first[series], series
    assert "puente_delivery_latency_seconds_count" in second

    lines = stdout.splitlines()
    # Not a terminal: compact progress lines instead of the live view.
    assert any(line.startswith("demo publishing t=") for line in lines)
    published = next(line for line in lines if line.startswith("published "))
    assert published.startswith(f"published {40 * DURATION} inputs")
    totals_line = next(line for line in lines if line.startswith("accepted "))
    deliveries = int(totals_line.rsplit("deliveries ", 1)[1])
    assert deliveries > 40 * DURATION  # most events reach more than one recipient
    reasons = next(line for line in lines if line.startswith("rejections by reason: "))
    assert "=" in reasons
    assert "none" not in reasons
    assert any(
        line.startswith("OK: every bad input was rejected with its expected reason")
        for line in lines
    ), stdout[-3000:]
    assert "Puente is up" in stdout  # the same endpoint table as `puente up`
    assert "Traceback" not in stderr


def test_sigterm_stops_the_demo_cleanly_with_a_summary(tmp_path: Path) -> None:
    router_port = free_port()
    process = start_demo(demo_env(tmp_path, router_port), "--rate", "40")
    try:
        scrape_when(router_port, "puente_deliveries_total", process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        end(process)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "OK: every bad input was rejected with its expected reason" in stdout
    assert "Traceback" not in stderr


def test_a_port_in_use_ends_the_demo_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_demo(demo_env(tmp_path, port), "--duration", "5")
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"the router cannot listen on 127.0.0.1:{port}" in stderr
    assert "PUENTE_ROUTER_PORT" in stderr
    assert "Traceback" not in stderr
    assert "published" not in stdout
