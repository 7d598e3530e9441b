"""The pinned Kafka jars: fetched once, and every missing piece said in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.kafkalocal import ArtifactsError, JavaMissingError
from services.kafkalocal.artifacts import (
    COPY_GOAL,
    POM,
    cache_folder,
    find_java,
    maven_reason,
    pinned_version,
    resolve,
)
from services.runtime.settings import REPO_ROOT

UNREACHABLE_MIRROR = """\
<settings>
  <mirrors>
    <mirror>
      <id>nowhere</id>
      <mirrorOf>*</mirrorOf>
      <url>http://127.0.0.1:9/maven2</url>
    </mirror>
  </mirrors>
</settings>
"""


def puente(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def fake_java(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\"' >&2\n")
    java.chmod(0o755)
    return java


def test_the_pinned_kafka_is_the_compose_stacks_broker_version() -> None:
    compose = (REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    images = set(re.findall(r"image: apache/kafka:(\S+)", compose))
    assert images == {pinned_version()}
    assert pinned_version().startswith("4.")


def test_java_17_or_newer_is_found_through_java_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = fake_java(tmp_path / "jdk" / "bin", "21.0.2")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert find_java() == java


def test_an_old_java_is_refused_with_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "jdk" / "bin", "1.8.0_392")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(JavaMissingError, match=r"is Java 8: .* needs 17 or newer"):
        find_java()


def test_without_java_kafka_up_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"} | {"PATH": str(bare)}
    result = puente("kafka", "up", "--state-dir", str(tmp_path / "state"), env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: no Java found: Apache Kafka needs a JDK 17 or newer "
        "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)\n"
    )


def test_an_unreachable_artifact_repository_is_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    """Maven with an empty local repository and a mirror nobody answers on."""
    home = tmp_path / "home"
    (home / ".m2").mkdir(parents=True)
    (home / ".m2" / "settings.xml").write_text(UNREACHABLE_MIRROR, encoding="utf-8")
    env = os.environ | {
        # Maven finds ~/.m2 through Java's user.home, which HOME does not change.
        "MAVEN_OPTS": f"-Duser.home={home}",
        "PUENTE_KAFKA_CACHE_DIR": str(tmp_path / "c"),
    }
    state = str(tmp_path / "state")
    try:
        result = puente(
            "kafka", "up", "--detach", "--port-base", "0", "--state-dir", state, env=env
        )
    finally:
        puente("kafka", "down", "--state-dir", state, env=env)
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(
        "error: Maven could not fetch the pinned Kafka jars (pom.xml): "
        "Could not transfer artifact "
    )
    assert line.endswith("Connection refused; is the artifact repository reachable?")
    assert "127.0.0.1:9" in line
    assert not (cache_folder(tmp_path / "c") / "complete").exists()


def test_the_maven_goal_names_the_plugin_version_the_pom_pins() -> None:
    pom = POM.read_text(encoding="utf-8")
    version = re.search(
        r"<artifactId>maven-dependency-plugin</artifactId>\s*<version>([^<]+)<", pom
    )
    assert version
    assert (
        f"org.apache.maven.plugins:maven-dependency-plugin:{version[1]}:copy-dependencies"
    ) == COPY_GOAL


def test_a_complete_cache_needs_no_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = cache_folder(tmp_path)
    (folder / "lib").mkdir(parents=True)
    (folder / "complete").write_text("x\n", encoding="utf-8")
    java = fake_java(tmp_path / "jdk" / "bin", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "jdk" / "bin"))
    found = resolve(cache=tmp_path)
    assert found.java == java
    assert found.classpath == f"{folder / 'lib'}{os.sep}*"
    assert found.version == pinned_version()


def test_without_maven_an_empty_cache_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_java(tmp_path / "jdk" / "bin", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setenv("PATH", str(tmp_path / "jdk" / "bin"))
    with pytest.raises(ArtifactsError, match=r"Maven \(mvn\) is not installed"):
        resolve(cache=tmp_path)


def test_a_changed_pom_gets_a_cache_folder_of_its_own(tmp_path: Path) -> None:
    changed = tmp_path / "pom.xml"
    changed.write_text(POM.read_text(encoding="utf-8") + "<!-- -->\n", encoding="utf-8")
    assert cache_folder(tmp_path, changed) != cache_folder(tmp_path)
    assert cache_folder(tmp_path).name.startswith(f"{pinned_version()}-")


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (
            "\x1b[0m[ERROR] Plugin p could not be resolved: Failed to read artifact "
            "descriptor for p: Could not transfer artifact a:b:pom:1 from/to nowhere "
            "(http://127.0.0.1:9/m): transfer failed for http://127.0.0.1:9/m/a.pom: "
            "Connect to 127.0.0.1:9 failed: Connection refused -> [Help 1]\n[ERROR]\n",
            "Could not transfer artifact a:b:pom:1 from/to nowhere "
            "(http://127.0.0.1:9/m): Connect to 127.0.0.1:9 failed: Connection refused",
        ),
        (
            "[ERROR] The goal you specified requires a project\n",
            "The goal you specified requires a project",
        ),
        ("", "no output"),
    ],
)
def test_maven_reason_is_the_line_that_says_why(output: str, reason: str) -> None:
    assert maven_reason(output) == reason
