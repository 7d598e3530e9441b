"""The gateway campaign: the real gateway process on free ports, real HTTP, junk in.

The gateway runs as its own process (``python -m services.gateway``) against a fresh
embedded broker, with its rate limit off (the campaign comes from few callers) and
credentials made for the campaign: one per scope (publish, read, both) and some
that are no credential at all. Two sources of requests:

- schemathesis draws requests the gateway's own OpenAPI document allows, and
  requests it forbids (negative mode), for every operation;
- `bodies.BodyMutator` posts mutated examples (fields removed, retyped, enlarged,
  odd unicode, deep nesting, not JSON, batches of those).

Every answer must be a 2xx with a JSON body or a 4xx with a problem+json body: any
5xx, any other answer, a dropped connection, an error logged by the gateway or its
exit is a failure, and the request is saved to a file for reproduction.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.fuzz.bodies import BodyMutator, BodyRequest
from services.fuzz.errors import FuzzSetupError
from services.gateway.tokens import Scope, TokenStore
from services.policy import load_policy
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import EmbeddedBroker, free_port, port_open
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings, TopicSettings

Progress = Callable[[int, int], None]
PROBLEM: Final = "application/problem+json"
_CONCURRENCY = 8
_SAMPLES = 5
_START_SECONDS = 60.0


@dataclass
class GatewayFigures:
    """What the gateway campaign measured."""

    requests: int = 0
    made: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    unexplained: int = 0  # 4xx without problem+json, other odd answers
    dropped: int = 0  # no answer at all (connection reset, timeout)
    crashes: int = 0  # errors the gateway logged, or its exit
    saved: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def throughput(self) -> float:
        """Requests per second over the campaign."""
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return (
            self.server_errors == 0
            and self.unexplained == 0
            and self.dropped == 0
            and self.crashes == 0
        )

    def note(self, text: str) -> None:
        """Keep a sample of what broke."""
        if len(self.samples) < _SAMPLES:
            self.samples.append(text)


@dataclass
class _Gateway:
    """The running gateway process and what the campaign needs to call it."""

    public: str
    admin: str
    tokens: dict[str, str]  # label -> bearer token (or junk)
    log: Path
    process: subprocess.Popen[bytes]


async def run(
    total: int,
    *,
    seed: int,
    schemathesis_share: float = 0.2,
    save_dir: Path = Path("fuzz-failures"),
    progress: Progress | None = None,
) -> GatewayFigures:
    """Send ``total`` requests to a fresh gateway; a share drawn by schemathesis."""
    figures = GatewayFigures()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="puente-fuzz-gw-") as tmp,
        EmbeddedBroker() as broker,
    ):
        await _create_topics(broker)
        with _gateway(Path(tmp), broker) as gw:
            drawn = int(total * schemathesis_share)
            recorder = _Recorder(figures, save_dir, progress, total)
            if drawn:
                await asyncio.to_thread(_schemathesis, gw, drawn, seed, recorder)
            await _bodies(gw, total - drawn, seed, recorder)
            if gw.process.poll() is not None:
                figures.crashes += 1
                figures.note(f"the gateway exited with {gw.process.returncode}")
        figures.crashes += _logged_errors(gw.log, figures)
    figures.elapsed = time.perf_counter() - started
    return figures


@contextlib.contextmanager
def _gateway(tmp: Path, broker: EmbeddedBroker) -> Iterator[_Gateway]:
    """Start ``python -m services.gateway`` on free ports; stop it at the end."""
    tokens = _tokens(tmp / "state" / "gateway" / "tokens.sqlite")
    port, admin = free_port(), free_port()
    env = {
        **os.environ,
        "PUENTE_STATE_DIR": str(tmp / "state"),
        "PUENTE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "PUENTE_GATEWAY_PORT": str(port),
        "PUENTE_GATEWAY_ADMIN_PORT": str(admin),
        # The campaign is a few callers sending as fast as they can: no rate limit.
        "PUENTE_GATEWAY_RATE_LIMIT_PER_S": "0",
        "PUENTE_LOG_LEVEL": "WARNING",
    }
    log = tmp / "gateway.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.gateway"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        try:
            _wait_listening(process, port, log)
            yield _Gateway(
                f"http://127.0.0.1:{port}",
                f"http://127.0.0.1:{admin}",
                tokens,
                log,
                process,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _create_topics(broker: EmbeddedBroker) -> None:
    """Every hub topic, so the relay and the delivery readers find them."""
    hub = HubSettings()
    catalog = Catalog.load(hub.schemas_dir)
    policy = load_policy(hub.policy_dir, catalog)
    wanted = runtime_topics.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    await runtime_topics.create(kafka, wanted)


def _tokens(path: Path) -> dict[str, str]:
    """A credential per scope for two institutions, and presented junk."""
    store = TokenStore(path)
    try:
        made = {
            "dgme publish": store.create("dgme", {Scope.PUBLISH})[1],
            "dgme read": store.create("dgme", {Scope.READ})[1],
            "dgme both": store.create("dgme", {Scope.PUBLISH, Scope.READ})[1],
            "mjsp_dnavmf both": store.create("mjsp_dnavmf", {Scope.PUBLISH, Scope.READ})[
                1
            ],
            "minsal publish": store.create("minsal", {Scope.PUBLISH})[1],
        }
        revoked_info, revoked = store.create("dgme")
        store.revoke(revoked_info.id)
    finally:
        store.close()
    made["revoked"] = revoked
    made["forged"] = "pte_dgme_" + "0" * 64
    made["junk"] = "not a token \u00e9"
    return made


def _wait_listening(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-1500:]
            raise FuzzSetupError(f"the gateway did not start: {tail}")
        time.sleep(0.1)


def _logged_errors(log: Path, figures: GatewayFigures) -> int:
    """Errors and tracebacks in the gateway's log (each one a crash)."""
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(("ERROR", "CRITICAL", "Traceback")):
            count += 1
            figures.note(f"gateway log: {line[:200]}")
    return count


class _Recorder:
    """Checks and counts each answer; saves the request of every failure."""

    def __init__(
        self,
        figures: GatewayFigures,
        save_dir: Path,
        progress: Progress | None,
        total: int,
    ) -> None:
        self.figures = figures
        self.save_dir = save_dir
        self.progress = progress
        self.total = total

    def answer(
        self,
        kind: str,
        request: dict[str, Any],
        status: int | None,
        content_type: str,
        body: bytes,
    ) -> None:
        """Count one request and its answer (``status`` None: no answer)."""
        figures = self.figures
        figures.requests += 1
        figures.made[kind] += 1
        problem = _why_wrong(status, content_type, body)
        if status is not None:
            figures.statuses[status] += 1
        if problem is not None:
            if status is None:
                figures.dropped += 1
            elif status >= 500:
                figures.server_errors += 1
            else:
                figures.unexplained += 1
            self._save(kind, request, status, problem)
        if self.progress is not None and figures.requests % 50 == 0:
            self.progress(figures.requests, self.total)

    def _save(
        self, kind: str, request: dict[str, Any], status: int | None, why: str
    ) -> None:
        figures = self.figures
        figures.note(f"{kind}: {request['method']} {request['path']} -> {status}: {why}")
        if len(figures.saved) >= 200:
            return  # enough to reproduce; the counts stay exact
        self.save_dir.mkdir(parents=True, exist_ok=True)
        path = self.save_dir / f"gateway-{len(figures.saved):04d}.json"
        body = request.get("body") or b""
        record = {
            "kind": kind,
            "status": status,
            "why": why,
            "method": request["method"],
            "path": request["path"],
            "query": request.get("query") or {},
            "headers": request.get("headers") or {},
            "body_base64": base64.b64encode(body).decode(),
            "error": request.get("error"),
        }
        path.write_text(json.dumps(record, indent=1))
        figures.saved.append(str(path))


def _why_wrong(status: int | None, content_type: str, body: bytes) -> str | None:
    """Why an answer breaks the contract, or None when it is a proper answer."""
    if status is None:
        return "no answer"
    if status >= 500:
        return f"server error {status}"
    media = content_type.split(";", maxsplit=1)[0].strip()
    if 400 <= status < 500:
        if media != PROBLEM:
            return f"{status} without a problem+json body ({media or 'none'})"
        try:
            document = json.loads(body)
        except ValueError:
            return f"{status} with a problem+json body that is no JSON"
        if not isinstance(document, dict) or "type" not in document:
            return f"{status} with a problem document without a type"
        return None
    if 200 <= status < 300:
        if media not in ("application/json", PROBLEM):
            return f"{status} with {media or 'no'} body"
        return None
    return f"unexpected status {status}"


RELAYED_PATHS: Final = "^/v1/(referrals|indicators)"


def _schemathesis(gw: _Gateway, count: int, seed: int, recorder: _Recorder) -> None:
    """``count`` requests drawn from the OpenAPI document, positive and negative."""
    try:
        import schemathesis  # noqa: PLC0415 - a development dependency
        from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415
        from hypothesis import seed as fix_seed  # noqa: PLC0415
        from hypothesis import strategies as st  # noqa: PLC0415
    except ImportError as e:
        raise FuzzSetupError(
            "the gateway campaign needs schemathesis: pip install -e '.[dev]'"
        ) from e
    # The referral and indicator reads relay to the tracker and the indicators
    # service, which this campaign does not run: there they answer 503 by design
    # (documented, with Retry-After), which the campaign would count as failures.
    # tests/integration/test_openapi_schemathesis.py runs them against live services.
    schema = schemathesis.openapi.from_url(f"{gw.admin}/openapi.json").exclude(
        path_regex=RELAYED_PATHS
    )
    modes = list(schemathesis.GenerationMode)
    cases = st.one_of(*(schema.as_strategy(generation_mode=m) for m in modes))
    labels = [*sorted(gw.tokens), "none"]
    client = httpx.Client(base_url=gw.public, timeout=30)
    done = 0
    rounds = 0

    def one(case: Any, label: str) -> None:
        nonlocal done
        if done >= count:
            return
        headers = dict(case.headers or {})
        if label != "none":
            headers["Authorization"] = f"Bearer {gw.tokens[label]}"
        kwargs = case.as_transport_kwargs(base_url=gw.public, headers=headers)
        request = _described(case, kwargs)
        try:
            answer = client.request(
                kwargs["method"],
                kwargs["url"],
                params=kwargs.get("params"),
                headers=_header_bytes(kwargs.get("headers") or {}, kwargs.get("cookies")),
                content=request["body"],
            )
        except httpx.LocalProtocolError:
            return  # a request the client itself refuses to send (no request made)
        except (httpx.HTTPError, UnicodeError, ValueError) as e:
            if isinstance(e, httpx.TransportError):
                request["error"] = f"{type(e).__name__}: {e}"[:300]
                recorder.answer("schemathesis", request, None, "", b"")
            return
        done += 1
        recorder.answer(
            "schemathesis", request, answer.status_code,
            answer.headers.get("content-type", ""), answer.content,
        )  # fmt: skip

    try:
        while done < count and rounds < 1000:
            test = settings(
                max_examples=min(5_000, count - done),
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )(given(case=cases, label=st.sampled_from(labels))(one))
            fix_seed(seed * 1000 + rounds)(test)()
            rounds += 1
    finally:
        client.close()


def _header_bytes(
    headers: dict[str, Any], cookies: dict[str, Any] | None
) -> dict[bytes, bytes]:
    """Headers as bytes (UTF-8): generated and junk values need not be ASCII.

    Cookies go in a ``Cookie`` header (httpx deprecates per-request cookies).
    """
    out = {
        k.encode("utf-8", "surrogatepass"): str(v).encode("utf-8", "surrogatepass")
        for k, v in headers.items()
    }
    if cookies:
        jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
        out[b"Cookie"] = jar.encode("utf-8", "surrogatepass")
    return out


def _described(case: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The request as saved for reproduction (the credential left out)."""
    body = kwargs.get("data") or kwargs.get("content")
    if body is None and "json" in kwargs:
        body = json.dumps(kwargs["json"]).encode()
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    headers = {
        k: str(v)
        for k, v in (kwargs.get("headers") or {}).items()
        if k != "Authorization"
    }
    return {
        "method": case.method,
        "path": case.formatted_path,
        "query": kwargs.get("params") or {},
        "headers": headers,
        "body": body,
    }


async def _bodies(gw: _Gateway, count: int, seed: int, recorder: _Recorder) -> None:
    """``count`` mutated bodies from the examples, a few requests in flight."""
    examples = {
        t: json.loads((REPO_ROOT / "examples" / f"{t}.json").read_text())
        for t in EVENT_TYPES
        if (REPO_ROOT / "examples" / f"{t}.json").is_file()
    }
    # Reproducible campaigns, not secrets: a seeded PRNG is the point.
    rng = random.Random(f"puente-fuzz-bodies:{seed}")  # noqa: S311
    mutator = BodyMutator(rng, examples, 4 * 1024 * 1024)
    publishers = [label for label in gw.tokens if "publish" in label or "both" in label]
    others = [label for label in gw.tokens if label not in publishers]
    queue: asyncio.Queue[tuple[BodyRequest, str] | None] = asyncio.Queue(64)

    async def worker(client: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            request, label = item
            await _send(client, gw, request, label, recorder)

    async with (
        httpx.AsyncClient(base_url=gw.public, timeout=60) as client,
        asyncio.TaskGroup() as group,
    ):
        for _ in range(_CONCURRENCY):
            group.create_task(worker(client))
        for _ in range(count):
            label = rng.choice(publishers) if rng.random() < 0.9 else rng.choice(others)
            await queue.put((mutator.draw(), label))
        for _ in range(_CONCURRENCY):
            await queue.put(None)


async def _send(
    client: httpx.AsyncClient,
    gw: _Gateway,
    request: BodyRequest,
    label: str,
    recorder: _Recorder,
) -> None:
    # Bytes: a junk credential need not be ASCII.
    headers = {b"Authorization": f"Bearer {gw.tokens[label]}".encode()}
    if request.content_type is not None:
        headers[b"Content-Type"] = request.content_type.encode()
    described = {
        "method": request.method,
        "path": request.path,
        "headers": {
            k.decode(): v.decode() for k, v in headers.items() if k != b"Authorization"
        },
        "body": request.body,
    }
    try:
        answer = await client.request(
            request.method, request.path, content=request.body, headers=headers
        )
    except httpx.TransportError:
        recorder.answer(request.kind, described, None, "", b"")
        return
    recorder.answer(
        request.kind, described, answer.status_code,
        answer.headers.get("content-type", ""), answer.content,
    )  # fmt: skip
