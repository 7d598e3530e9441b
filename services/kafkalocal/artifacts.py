"""The pinned Apache Kafka jars, resolved once with Maven into a cache outside the repo.

``deploy/kafka/pom.xml`` pins the broker (the compose stack's version). Its jars are
copied into ``<cache>/<digest of the pom>/lib``; a ``complete`` marker written last
makes a later start skip Maven altogether, and a changed pin gets a folder of its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.kafkalocal.errors import ArtifactsError, JavaMissingError
from services.runtime.settings import REPO_ROOT

POM: Final = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
_MARKER: Final = "complete"
# Maven's own words for "the repository could not be reached or refused the file".
_MAVEN_REASON: Final = re.compile(
    r"(Could not (?:transfer|find|resolve)[^\n]*|Unknown host[^\n]*|"
    r"Connection refused[^\n]*|Network is unreachable[^\n]*)"
)
# Named in full, not as `dependency:`: with no repository to ask, Maven then says
# which download failed, instead of "no plugin found for prefix".
COPY_GOAL: Final = (
    "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
)
_NOISE: Final = re.compile(r"\x1b\[[0-9;]*m|transfer failed for \S+: | -> \[Help \d+\]")
_JAVA_VERSION: Final = re.compile(r'version "(\d+)(?:\.(\d+))?')
MIN_JAVA: Final = 17


@dataclass(frozen=True, slots=True)
class Artifacts:
    """The JVM and the class path that run the pinned Kafka."""

    java: Path
    lib: Path
    version: str

    @property
    def classpath(self) -> str:
        """Every jar of ``lib``, as the JVM's wildcard class path."""
        return f"{self.lib}{os.sep}*"


def cache_root() -> Path:
    """``PUENTE_KAFKA_CACHE_DIR``, else ``$XDG_CACHE_HOME/puente/kafka``."""
    explicit = os.environ.get("PUENTE_KAFKA_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "puente" / "kafka"


def pinned_version(pom: Path = POM) -> str:
    """The ``kafka.version`` property of the pom."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _read(pom))
    if not found:
        raise ArtifactsError(f"{pom.name} names no <kafka.version>")
    return found.group(1).strip()


def find_java() -> Path:
    """``$JAVA_HOME/bin/java``, else ``java`` on the PATH; it must be 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    candidate = Path(home) / "bin" / "java" if home else None
    if candidate is None or not candidate.is_file():
        found = shutil.which("java")
        candidate = Path(found) if found else None
    if candidate is None:
        raise JavaMissingError(
            "no Java found: Apache Kafka needs a JDK 17 or newer "
            "(apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
        )
    major = java_major(candidate)
    if major < MIN_JAVA:
        raise JavaMissingError(
            f"{candidate} is Java {major}: Apache Kafka 4 needs 17 or newer "
            "(set JAVA_HOME)"
        )
    return candidate


def java_major(java: Path) -> int:
    """The major version ``java -version`` reports (8 for ``1.8.0``)."""
    try:
        done = subprocess.run(  # noqa: S603 - the JDK found above, no shell
            [str(java), "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaMissingError(f"cannot run {java} -version: {e}") from e
    found = _JAVA_VERSION.search(done.stderr + done.stdout)
    if done.returncode != 0 or not found:
        raise JavaMissingError(f"{java} -version failed; set JAVA_HOME to a JDK 17+")
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def resolve(
    cache: Path | None = None, pom: Path = POM, maven_args: Sequence[str] = ()
) -> Artifacts:
    """The JVM and the pinned jars; runs Maven only when the cache lacks them.

    ``maven_args`` go to Maven as they are (a settings file, a local repository).
    """
    java = find_java()
    version = pinned_version(pom)
    folder = cache_folder(cache or cache_root(), pom)
    lib = folder / "lib"
    if not (folder / _MARKER).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        # One download at a time: a second `kafka up` or test run waits for the first.
        with (folder.parent / f"{folder.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / _MARKER).is_file():
                _download(pom, lib, maven_args)
                (folder / _MARKER).write_text(version + "\n", encoding="utf-8")
    return Artifacts(java=java, lib=lib, version=version)


def cache_folder(cache: Path, pom: Path = POM) -> Path:
    """``<cache>/<version>-<digest of the pom>``: a changed pom gets a new folder."""
    digest = hashlib.sha256(_read(pom).encode()).hexdigest()[:16]
    return cache / f"{pinned_version(pom)}-{digest}"


def _download(pom: Path, lib: Path, maven_args: Sequence[str]) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ArtifactsError(
            "Maven (mvn) is not installed: it fetches the pinned Kafka jars "
            "(apt-get install maven)"
        )
    if lib.exists():
        shutil.rmtree(lib)  # a download that stopped half-way
    lib.parent.mkdir(parents=True, exist_ok=True)
    command = [
        mvn, "-B", "-q", "-f", str(pom),
        COPY_GOAL, f"-DoutputDirectory={lib}", *maven_args,
    ]  # fmt: skip
    try:
        done = subprocess.run(  # noqa: S603 - Maven on the PATH, no shell
            command, capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise ArtifactsError(
            "Maven did not fetch the Kafka jars within 15 minutes: "
            "is the artifact repository reachable?"
        ) from e
    if done.returncode != 0:
        raise ArtifactsError(
            f"Maven could not fetch the pinned Kafka jars ({pom.name}): "
            f"{maven_reason(done.stdout + done.stderr)}; is the artifact repository "
            "reachable?"
        )


def maven_reason(output: str) -> str:
    """The one line of Maven's output that says why resolution failed."""
    output = _NOISE.sub("", output)
    found = _MAVEN_REASON.search(output)
    if found:
        return found.group(1).strip()[:400]
    errors = [line for line in output.splitlines() if "[ERROR]" in line and line.strip()]
    text = errors[0] if errors else (output.strip().splitlines() or ["no output"])[-1]
    return text.replace("[ERROR]", "").strip()[:400]


def _read(pom: Path) -> str:
    try:
        return pom.read_text(encoding="utf-8")
    except OSError as e:
        raise ArtifactsError(f"cannot read {pom}: {e.strerror}") from e
