"""Subject keys' base32: the stdlib's text, lowercase and unpadded, for any bytes."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from services.policy.base32 import DIGEST_BYTES, encode_digest


def _stdlib(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


@given(st.binary(min_size=DIGEST_BYTES, max_size=DIGEST_BYTES))
def test_a_digest_encodes_as_the_stdlib_does(digest: bytes) -> None:
    assert encode_digest(digest) == _stdlib(digest)


@given(st.binary(max_size=64))
def test_other_lengths_encode_as_the_stdlib_does(data: bytes) -> None:
    assert encode_digest(data) == _stdlib(data)


def test_the_extremes_encode_as_the_stdlib_does() -> None:
    for digest in (bytes(DIGEST_BYTES), b"\xff" * DIGEST_BYTES, bytes(range(32))):
        assert encode_digest(digest) == _stdlib(digest)
    assert len(encode_digest(b"\xff" * DIGEST_BYTES)) == 52
