"""The broker's ACLs through kafka-python's admin client (DescribeAcls, CreateAcls).

aiokafka, which every service uses, has no ACL calls; kafka-python has, but no type
information (`services.acl.kafka_python`): only this module uses it, and gives the
rest typed functions. Its errors become `AclAdminError`, one line an operator can act
on.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePath
from types import TracebackType
from typing import Any, Final, Self, get_args

from services.acl.kafka_python import admin as kafka_admin
from services.acl.kafka_python import errors as kafka_errors
from services.acl.plan import Binding, Operation, PatternType, Permission, ResourceType
from services.contracts.errors import PuenteError
from services.runtime.kafka import admin_config, bootstrap
from services.runtime.settings import KafkaSettings

CLIENT_ID: Final = "puente-acl"
# As the compose stack's init job sets them (kafka-configs --add-config).
SCRAM_ITERATIONS: Final = 8192

_OPERATIONS: Final[dict[str, Operation]] = {op: op for op in get_args(Operation)}
_PERMISSIONS: Final[dict[str, Permission]] = {p: p for p in get_args(Permission)}
_RESOURCES: Final[dict[str, ResourceType]] = {r: r for r in get_args(ResourceType)}
_PATTERNS: Final[dict[str, PatternType]] = {p: p for p in get_args(PatternType)}


class AclAdminError(PuenteError):
    """The broker's ACLs could not be read or changed; the message says why."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A binding the broker refused to create, and the broker's reason."""

    binding: Binding
    error: str
    description: str
    unauthorized: bool = False


def to_acl(binding: Binding) -> Any:
    """The kafka-python ``ACL`` of ``binding`` (names map one to one onto its enums).

    A ``CLUSTER`` binding must name ``kafka-cluster``, Kafka's only cluster resource.
    """
    return kafka_admin.ACL(
        principal=binding.principal,
        host=binding.host,
        operation=kafka_admin.ACLOperation[binding.operation],
        permission_type=kafka_admin.ACLPermissionType[binding.permission],
        resource_pattern=kafka_admin.ResourcePattern(
            kafka_admin.ResourceType[binding.resource_type],
            binding.name,
            kafka_admin.ACLResourcePatternType[binding.pattern_type],
        ),
    )


def from_acl(acl: Any) -> Binding:
    """The `Binding` of a kafka-python ``ACL`` read from the broker.

    Raises ``ValueError`` for a value no concrete binding has (``ANY``, ``UNKNOWN``).
    """
    pattern = acl.resource_pattern
    try:
        return Binding(
            principal=str(acl.principal),
            permission=_PERMISSIONS[acl.permission_type.name],
            operation=_OPERATIONS[acl.operation.name],
            resource_type=_RESOURCES[pattern.resource_type.name],
            pattern_type=_PATTERNS[pattern.pattern_type.name],
            name=str(pattern.resource_name),
            host=str(acl.host),
        )
    except KeyError as e:
        raise ValueError(f"not a concrete ACL binding: {e.args[0]}") from e


class KafkaAcls:
    """An open admin connection to the cluster of ``settings``; use it as a context.

    ``connect`` fails with `AclAdminError` if the cluster cannot be reached or the
    client cannot authenticate; the other methods if the broker refuses.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._where = bootstrap(settings)
        self._log = _KafkaLog()
        self._client: Any = None

    def __enter__(self) -> Self:
        self._log.attach()
        try:
            self._client = self._connect()
        except BaseException:
            self._log.detach()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._client is not None:
                self._client.close()
        finally:
            self._log.detach()

    def describe(self) -> list[Binding]:
        """Every ACL binding on the cluster."""
        everything = kafka_admin.ACLFilter(
            principal=None,
            host=None,
            operation=kafka_admin.ACLOperation.ANY,
            permission_type=kafka_admin.ACLPermissionType.ANY,
            resource_pattern=kafka_admin.ResourcePatternFilter(
                kafka_admin.ResourceType.ANY, None, kafka_admin.ACLResourcePatternType.ANY
            ),
        )
        with self._translated("DescribeAcls", "DESCRIBE"):
            acls, _ = self._client.describe_acls(everything)
        try:
            return [from_acl(acl) for acl in acls]
        except ValueError as e:
            raise AclAdminError(f"the broker at {self._where} listed {e}") from e

    def create(self, bindings: Sequence[Binding]) -> list[Failure]:
        """Create ``bindings``; the ones the broker refused, with its reasons."""
        if not bindings:
            return []
        acls = [to_acl(b) for b in bindings]
        with self._translated("CreateAcls", "ALTER"):
            result = self._client.create_acls(acls)
        succeeded = {id(a) for a in result["succeeded"]}
        # kafka-python lists the errors of the failed ones in request order.
        failed = [
            b for a, b in zip(acls, bindings, strict=True) if id(a) not in succeeded
        ]
        errors: list[Any] = list(result["failed"])
        if len(errors) != len(failed):
            raise AclAdminError(
                f"the broker at {self._where} answered CreateAcls for "
                f"{len(succeeded) + len(errors)} of {len(bindings)} bindings; "
                "list them with kafka-acls.sh --list"
            )
        failures = [_failure(b, e) for b, e in zip(failed, errors, strict=True)]
        if failures and all(f.unauthorized for f in failures):
            raise self._unauthorized("CreateAcls", "ALTER")
        return failures

    def scram_users(self, names: Iterable[str]) -> set[str]:
        """Those of ``names`` that have a SCRAM-SHA-512 credential on the cluster."""
        # Named, not "every user": Kafka 4.1 answers an unauthorized request for every
        # user with nothing at all (a NullPointerException while it builds the error
        # response), which a client can only take for a timeout.
        with self._translated("DescribeUserScramCredentials", "DESCRIBE"):
            found = self._client.describe_user_scram_credentials(sorted(names))
        return {
            str(name)
            for name, info in found.items()
            if not info["error"]
            and any(
                c["mechanism"].name == "SCRAM_SHA_512" for c in info["credential_infos"]
            )
        }

    def set_scram(self, users: Mapping[str, str]) -> dict[str, str]:
        """Create or update each user's SCRAM-SHA-512 credential (name -> password).

        Returns the users the broker refused, with its reason. The salted password is
        derived here (PBKDF2, 8192 iterations): the password never leaves this process.
        """
        if not users:
            return {}
        upsertions = [
            kafka_admin.UserScramCredentialUpsertion(
                name, "SCRAM-SHA-512", password, iterations=SCRAM_ITERATIONS
            )
            for name, password in sorted(users.items())
        ]
        with self._translated("AlterUserScramCredentials", "ALTER"):
            result = self._client.alter_user_scram_credentials(upsertions)
        return {str(name): str(error) for name, error in result.items() if error}

    def _connect(self) -> Any:
        timeout = self._settings.request_timeout_ms
        try:
            # kafka-python connects in its constructor and waits 30 s by default;
            # the services' request timeout bounds that wait too.
            return kafka_admin.KafkaAdminClient(
                **admin_config(self._settings, CLIENT_ID), bootstrap_timeout_ms=timeout
            )
        except kafka_errors.SaslAuthenticationFailedError as e:
            raise self._unauthenticated(e) from e
        except kafka_errors.KafkaTimeoutError as e:
            # It retries every failure until the deadline, then reports only that:
            # the last failure it logged says whether the broker refused us.
            cause = self._log.last_failure
            if isinstance(cause, kafka_errors.SaslAuthenticationFailedError):
                raise self._unauthenticated(cause) from e
            detail = f" ({_reason(cause)})" if cause is not None else ""
            raise AclAdminError(
                f"cannot reach the Kafka broker at {self._where} within {timeout} ms"
                f"{detail}; check PUENTE_KAFKA_BOOTSTRAP_SERVERS and the listener's "
                "security protocol"
            ) from e
        except kafka_errors.KafkaError as e:
            raise AclAdminError(
                f"cannot connect to the Kafka broker at {self._where}: {_reason(e)}"
            ) from e

    @contextmanager
    def _translated(self, api: str, cluster_operation: str) -> Iterator[None]:
        try:
            yield
        except kafka_errors.SecurityDisabledError as e:
            raise AclAdminError(
                f"the broker at {self._where} does not support ACLs: it has no "
                f"authorizer (SecurityDisabledError on {api}); set authorizer.class.name "
                "(StandardAuthorizer) on the brokers"
            ) from e
        except kafka_errors.AuthorizationError as e:
            raise self._unauthorized(api, cluster_operation) from e
        except kafka_errors.RequestTimedOutError as e:
            if self._log.unreadable_reply:
                raise AclAdminError(
                    f"the broker at {self._where} does not support ACLs: its answer to "
                    f"{api} is not a valid {api} response (the embedded broker, Tansu, "
                    "has no ACLs); use Apache Kafka with an authorizer"
                ) from e
            raise AclAdminError(
                f"the broker at {self._where} did not answer {api} within "
                f"{self._settings.request_timeout_ms} ms; run again (apply creates only "
                "what is missing)"
            ) from e
        except kafka_errors.KafkaError as e:
            raise AclAdminError(f"{api} failed at {self._where}: {_reason(e)}") from e

    def _unauthorized(self, api: str, cluster_operation: str) -> AclAdminError:
        return AclAdminError(
            f"not authorized: {self._who()} may not call {api} (it needs "
            f"{cluster_operation} on the cluster); run as the admin principal"
        )

    def _unauthenticated(self, error: BaseException) -> AclAdminError:
        return AclAdminError(
            f"authentication as {self._who()} failed at {self._where}: {_reason(error)}; "
            "check PUENTE_KAFKA_SASL_USERNAME and PUENTE_KAFKA_SASL_PASSWORD"
        )

    def _who(self) -> str:
        name = self._settings.sasl_username
        if self._settings.security_protocol.startswith("SASL") and name:
            return f"SASL user {name!r}"
        return "this client"


def summarize(failures: Iterable[Failure]) -> str:
    """``<count> <error> (<description>)`` per reason, most frequent first."""
    failures = list(failures)
    counts = Counter(f.error for f in failures)
    described = {f.error: f.description for f in failures}
    return "; ".join(
        f"{n} {error}" + (f" ({described[error]})" if described[error] else "")
        for error, n in counts.most_common()
    )


class _KafkaLog(logging.Handler):
    """Keeps kafka-python's records from the process's log handlers, and learns from them.

    kafka-python logs each failed connection attempt and every exception of its I/O
    thread, tracebacks included, and raises only a generic timeout in the caller's
    thread. The operator gets one line from us instead, made precise with what it
    logged.
    """

    _LOGGER: Final = "kafka"

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.last_failure: BaseException | None = None
        self.unreadable_reply = False
        self._propagate = True

    def attach(self) -> None:
        logger = logging.getLogger(self._LOGGER)
        self._propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False

    def detach(self) -> None:
        logger = logging.getLogger(self._LOGGER)
        logger.removeHandler(self)
        logger.propagate = self._propagate

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException) and not isinstance(
                arg, kafka_errors.KafkaTimeoutError
            ):
                self.last_failure = arg
        if record.exc_info and _decoding(record.exc_info[2]):
            self.unreadable_reply = True
        if "Unable to decode" in str(record.msg):
            self.unreadable_reply = True


def _failure(binding: Binding, error: Any) -> Failure:
    # kafka-python gives the error class of each refused binding, not the broker's
    # message; its description is the best reason there is.
    description = str(getattr(error, "description", "") or "")
    unauthorized = isinstance(error, type) and issubclass(
        error, kafka_errors.AuthorizationError
    )
    return Failure(binding, str(error.__name__), description, unauthorized)


def _decoding(tb: TracebackType | None) -> bool:
    # An exception raised while kafka-python decoded a response: its protocol package
    # or the decoders it generates at run time ("<codegen_decode:...>").
    for frame in traceback.extract_tb(tb):
        if frame.filename.startswith("<codegen_decode"):
            return True
        parts = PurePath(frame.filename).parts
        if "kafka" in parts and "protocol" in parts:
            return True
    return False


def _reason(error: BaseException | None) -> str:
    if error is None:
        return "no reason given"
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
