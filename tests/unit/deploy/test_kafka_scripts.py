"""deploy/kafka/start.sh and init.sh, run with stand-ins for the Kafka tools."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from services.acl import plan
from services.acl.formats import AdminConnection, kafka_acls
from services.policy import Policy
from services.runtime.settings import REPO_ROOT

KAFKA = REPO_ROOT / "deploy" / "kafka"
PASSWORD = "0123456789abcdef0123456789abcdef"
# Each stand-in records its arguments, one call per line, and succeeds.
STUB = '#!/bin/sh\nprintf "%s\\n" "$(basename "$0") $*" >> "$CALLS"\n'
TOOLS = ("kafka-storage.sh", "kafka-server-start.sh", "kafka-configs.sh", "kafka-acls.sh")


@pytest.fixture
def kafka_home(tmp_path: Path) -> Path:
    home = tmp_path / "kafka"
    (home / "bin").mkdir(parents=True)
    for tool in TOOLS:
        path = home / "bin" / tool
        path.write_text(STUB)
        path.chmod(0o755)
    return home


def run(script: str, env: dict[str, str], tmp_path: Path) -> tuple[int, str, list[str]]:
    calls = tmp_path / "calls"
    calls.touch()
    done = subprocess.run(
        ["sh", str(KAFKA / script)],
        env={"PATH": os.environ.get("PATH", ""), "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr, calls.read_text().splitlines()


def start_env(kafka_home: Path, tmp_path: Path) -> dict[str, str]:
    keystore = tmp_path / "server.pem"
    keystore.write_text("-----BEGIN PRIVATE KEY-----\n")
    return {
        "KAFKA_HOME": str(kafka_home),
        "KAFKA_ADMIN_PASSWORD": PASSWORD,
        "KAFKA_CLUSTER_ID": "b6lntouZTLyL5fyNVW8BoQ",
        "KAFKA_EXTERNAL_HOST": "kafka.example.gob.sv",
        "KAFKA_TLS_KEYSTORE": str(keystore),
        "KAFKA_RUN_DIR": str(tmp_path / "run"),
    }


def test_start_formats_with_the_admin_scram_user_then_runs_the_broker(
    kafka_home: Path, tmp_path: Path
) -> None:
    code, output, calls = run("start.sh", start_env(kafka_home, tmp_path), tmp_path)
    assert code == 0, output
    assert [c.split()[0] for c in calls] == ["kafka-storage.sh", "kafka-server-start.sh"]
    storage = shlex.split(calls[0])
    assert "--ignore-formatted" in storage
    assert f"SCRAM-SHA-512=[name=admin,password={PASSWORD}]" in storage
    rendered = (tmp_path / "run" / "server.properties").read_text()
    settings = [line for line in rendered.splitlines() if not line.startswith("#")]
    assert not [line for line in settings if re.search(r"@[A-Z_]+@", line)]
    assert f'password="{PASSWORD}"' in rendered
    assert "EXTERNAL://kafka.example.gob.sv:9094" in rendered
    assert f"keystore.location={tmp_path / 'server.pem'}" in rendered
    assert calls[1].endswith(str(tmp_path / "run" / "server.properties"))
    health = (tmp_path / "run" / "admin.properties").read_text()
    assert "SCRAM-SHA-512" in health
    assert oct((tmp_path / "run" / "server.properties").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"KAFKA_ADMIN_PASSWORD": "short1"}, "at least 24"),
        ({"KAFKA_ADMIN_PASSWORD": PASSWORD + '";x'}, "letters and digits"),
        ({"KAFKA_EXTERNAL_HOST": "evil|host"}, "host name"),
        ({"KAFKA_EXTERNAL_PORT": "90a"}, "port number"),
        ({"KAFKA_TLS_KEYSTORE": "/nonexistent/server.pem"}, "missing or unreadable"),
    ],
)
def test_start_refuses_settings_that_would_break_or_weaken_the_broker(
    kafka_home: Path, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    code, output, calls = run(
        "start.sh", start_env(kafka_home, tmp_path) | change, tmp_path
    )
    assert code == 1
    assert message in output
    assert calls == [], "nothing is formatted or started"


def test_start_needs_the_admin_password(kafka_home: Path, tmp_path: Path) -> None:
    env = start_env(kafka_home, tmp_path)
    del env["KAFKA_ADMIN_PASSWORD"]
    code, output, calls = run("start.sh", env, tmp_path)
    assert code != 0
    assert "KAFKA_ADMIN_PASSWORD" in output
    assert calls == []


def init_env(kafka_home: Path, tmp_path: Path, plan_file: Path) -> dict[str, str]:
    return {
        "KAFKA_HOME": str(kafka_home),
        "KAFKA_ADMIN_PASSWORD": PASSWORD,
        "KAFKA_ROUTER_PASSWORD": "r" + PASSWORD,
        "KAFKA_GATEWAY_PASSWORD": "g" + PASSWORD,
        "KAFKA_AUDIT_PASSWORD": "a" + PASSWORD,
        "KAFKA_REFERRALS_PASSWORD": "t" + PASSWORD,
        "KAFKA_INDICATORS_PASSWORD": "i" + PASSWORD,
        "KAFKA_USERS_DIR": str(tmp_path / "users"),
        "KAFKA_ADMIN_CONFIG": str(tmp_path / "admin.properties"),
        "ACL_PLAN": str(plan_file),
    }


def test_init_creates_every_user_then_applies_the_plan(
    kafka_home: Path, tmp_path: Path, policy: Policy
) -> None:
    users = tmp_path / "users"
    users.mkdir()
    (users / "dgme").write_text("d" + PASSWORD + "\n")
    (users / "puente-gateway-reader.dgme").write_text("e" + PASSWORD + "\n")
    (users / "Not-An-Id").write_text(PASSWORD)
    (users / "puente-gateway-reader.Not-An-Id").write_text(PASSWORD)
    admin_config = str(tmp_path / "admin.properties")
    plan_file = tmp_path / "acls.sh"
    script = kafka_acls(plan(policy), AdminConnection("kafka:9092", admin_config))
    plan_file.write_text("\n".join(script) + "\n")
    code, output, calls = run(
        "init.sh", init_env(kafka_home, tmp_path, plan_file), tmp_path
    )
    assert code == 0, output
    configs = [shlex.split(c) for c in calls if c.startswith("kafka-configs.sh")]
    created = {
        c[c.index("--entity-name") + 1]: c[c.index("--add-config") + 1] for c in configs
    }
    assert created == {
        "puente-router": f"SCRAM-SHA-512=[iterations=8192,password=r{PASSWORD}]",
        "puente-gateway": f"SCRAM-SHA-512=[iterations=8192,password=g{PASSWORD}]",
        "puente-audit": f"SCRAM-SHA-512=[iterations=8192,password=a{PASSWORD}]",
        "hub_referrals": f"SCRAM-SHA-512=[iterations=8192,password=t{PASSWORD}]",
        "hub_indicators": f"SCRAM-SHA-512=[iterations=8192,password=i{PASSWORD}]",
        "dgme": f"SCRAM-SHA-512=[iterations=8192,password=d{PASSWORD}]",
        "puente-gateway-reader.dgme": (
            f"SCRAM-SHA-512=[iterations=8192,password=e{PASSWORD}]"
        ),
    }
    assert "skipping" in output
    acls = [c for c in calls if c.startswith("kafka-acls.sh")]
    assert len(acls) == len(script) - 2
    assert all(f"--command-config {admin_config}" in c for c in acls)
    assert f'password="{PASSWORD}"' in Path(admin_config).read_text()


def test_init_refuses_a_password_kafka_configs_would_misread(
    kafka_home: Path, tmp_path: Path
) -> None:
    plan_file = tmp_path / "acls.sh"
    plan_file.write_text("exit 0\n")
    env = init_env(kafka_home, tmp_path, plan_file) | {"KAFKA_AUDIT_PASSWORD": "a,b]c"}
    code, output, calls = run("init.sh", env, tmp_path)
    assert code == 1
    assert "puente-audit must be letters and digits" in output
    assert not any("puente-audit" in c for c in calls)
