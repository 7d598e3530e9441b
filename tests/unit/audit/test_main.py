"""``python -m services.audit`` refuses to start without a broker to consume from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.runtime.settings import REPO_ROOT


def test_running_without_bootstrap_servers_fails_with_a_clear_message(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUENTE_")}
    env["PUENTE_STATE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "services.audit"],
        cwd=REPO_ROOT, env=env, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert b"PUENTE_KAFKA_BOOTSTRAP_SERVERS is not set" in done.stderr
    assert not (tmp_path / "audit").exists()
