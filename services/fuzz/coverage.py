"""Coverage-guided fuzzing of the router's pure decisions with atheris (no Kafka).

``python -m services.fuzz.coverage -runs=N [-seed=S] [corpus_dir]`` feeds libFuzzer's
inputs to `Pipeline.inspect` and, for what it accepts, `Pipeline.deliver`: the
first byte picks the inbound topic, the rest is the record value. A crash is any
exception leaving them, or an audit entry the ledger would refuse. The seed corpus
is the simulator's valid encodings, so mutations start from events that reach the
policy. atheris is optional (``pip install atheris``); `run` reports execs/s from
libFuzzer's last status line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.fuzz.errors import FuzzSetupError

_STATUS = re.compile(r"#(\d+)\s+DONE\s.*?exec/s:\s*(\d+)")
_STATE_ENV = "PUENTE_FUZZ_COVERAGE_STATE"
_NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CoverageFigures:
    """What the coverage-guided campaign measured."""

    execs: int
    execs_per_second: int
    crashed: bool
    seconds: float
    tail: str


def run(runs: int, *, seed: int, timeout: float = 3600.0) -> CoverageFigures:
    """Run ``runs`` libFuzzer executions in a child process and read its figures."""
    import time  # noqa: PLC0415 - only here

    with tempfile.TemporaryDirectory(prefix="puente-atheris-") as tmp:
        corpus = Path(tmp) / "corpus"
        started = time.perf_counter()
        done = subprocess.run(  # noqa: S603 - this interpreter, fixed module
            [sys.executable, "-m", "services.fuzz.coverage", f"-runs={runs}",
             f"-seed={seed}", "-max_len=65536", f"-artifact_prefix={tmp}/", str(corpus)],
            capture_output=True,
            text=True,
            # The target's development key goes into this run's own directory.
            env={**os.environ, _STATE_ENV: str(Path(tmp) / "state")},
            timeout=timeout,
            check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
    output = done.stderr + done.stdout
    if "No module named 'atheris'" in output:
        raise FuzzSetupError(
            "the coverage-guided campaign needs atheris: pip install atheris"
        )
    found = _STATUS.search(output)
    return CoverageFigures(
        execs=int(found.group(1)) if found else 0,
        execs_per_second=int(found.group(2)) if found else 0,
        crashed=done.returncode != 0,
        seconds=seconds,
        tail=output[-1500:],
    )


class _Target:
    """The pipeline under test and what the target needs to call it."""

    def __init__(self) -> None:
        from services.contracts.catalog import Catalog  # noqa: PLC0415
        from services.fuzz.inputs import InputStream  # noqa: PLC0415
        from services.policy import load_policy  # noqa: PLC0415
        from services.router.pipeline import Limits, Pipeline  # noqa: PLC0415
        from services.runtime.hub_key_store import (  # noqa: PLC0415
            HubKeySettings,
            subject_keys,
        )
        from services.runtime.settings import HubSettings  # noqa: PLC0415

        self.state = os.environ.get(_STATE_ENV) or tempfile.mkdtemp(
            prefix="puente-atheris-state-"
        )
        hub = HubSettings(state_dir=Path(self.state))
        self.catalog = Catalog.load(hub.schemas_dir)
        policy = load_policy(hub.policy_dir, self.catalog)
        keys = subject_keys(HubKeySettings(hub=hub))
        self.pipeline = Pipeline(
            self.catalog, policy, keys, Limits(512 * 1024, timedelta(seconds=300))
        )
        self.pipeline.warm(policy.schemas())
        stream = InputStream(
            self.catalog, policy.publish_rights, sorted(policy.institutions),
            seed=1, now_fn=lambda: _NOW, max_event_bytes=512 * 1024,
        )  # fmt: skip
        self.topics = stream.inbound_topics
        self.seeds = [
            bytes([self.topics.index(r.topic)]) + (r.value or b"")
            for r in stream.take(400)
            if r.kind == "sim"
        ]

    def close(self) -> None:
        """Remove the development key made for the target."""
        shutil.rmtree(self.state, ignore_errors=True)

    def one(self, data: bytes) -> None:
        """One input: inspect, deliver what is accepted, check every audit entry."""
        from services.audit.intake import to_batch  # noqa: PLC0415
        from services.router.pipeline import Accepted, Inbound  # noqa: PLC0415

        if not data:
            return
        topic = self.topics[data[0] % len(self.topics)]
        record = Inbound(topic, 0, 0, None, data[1:], 0)
        outcome = self.pipeline.inspect(record, _NOW)
        if not isinstance(outcome, Accepted):
            self.pipeline.reject(outcome, _NOW)
            return
        outputs = self.pipeline.deliver(outcome, _NOW)
        audit = [_Record(o.value) for o in outputs if o.kind == "audit"]
        batch = to_batch(self.catalog, audit)
        if batch.skipped:
            raise AssertionError(f"the ledger refuses an audit entry: {batch.skipped[0]}")


@dataclass(frozen=True, slots=True)
class _Record:
    """The shape of a consumer record `to_batch` reads."""

    value: bytes
    topic: str = "hub.audit"
    partition: int = 0
    offset: int = 0


def main() -> None:
    """The libFuzzer entry point (atheris), seeded with the simulator's encodings."""
    import atheris  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415

    with atheris.instrument_imports(include=["services"]):
        target = _Target()
    corpus = Path(sys.argv[-1]) if not sys.argv[-1].startswith("-") else None
    if corpus is not None:
        corpus.mkdir(parents=True, exist_ok=True)
        for index, seed in enumerate(target.seeds):
            (corpus / f"seed-{index:04d}").write_bytes(seed)

    def test_one(data: Any) -> None:
        target.one(bytes(data))

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
