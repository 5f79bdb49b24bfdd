"""Payment notification signatures: what is accepted and what is refused, and why."""

from __future__ import annotations

import pytest

from gateway.payments.signature import (
    SignatureRejected,
    parse_header,
    signature,
    signature_header,
    verify,
)

BODY = b'{"payment_id":"pay_1","order_id":"0b6f","status":"succeeded"}'
OLD = "old-secret-0123456789"
NEW = "new-secret-0123456789"
NOW = 1_800_000_000


def test_a_body_signed_with_the_secret_is_accepted() -> None:
    header = signature_header(BODY, [NEW], NOW)
    assert verify(header, BODY, [NEW], NOW, 300) == NOW


def test_during_a_rotation_either_secret_is_accepted() -> None:
    assert verify(signature_header(BODY, [OLD], NOW), BODY, [NEW, OLD], NOW, 300) == NOW
    assert verify(signature_header(BODY, [NEW], NOW), BODY, [NEW, OLD], NOW, 300) == NOW
    # A provider rotating sends one signature per secret; the receiver knows only the new one.
    assert verify(signature_header(BODY, [OLD, NEW], NOW), BODY, [NEW], NOW, 300) == NOW


def test_another_secret_is_refused() -> None:
    with pytest.raises(SignatureRejected, match="does not match"):
        verify(signature_header(BODY, [OLD], NOW), BODY, [NEW], NOW, 300)


def test_a_tampered_body_is_refused() -> None:
    header = signature_header(BODY, [NEW], NOW)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify(header, BODY.replace(b"succeeded", b"failed"), [NEW], NOW, 300)


def test_a_changed_timestamp_is_refused() -> None:
    digest = signature(BODY, NEW, NOW)
    with pytest.raises(SignatureRejected, match="does not match"):
        verify(f"t={NOW + 1},v1={digest}", BODY, [NEW], NOW, 300)


@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_a_timestamp_outside_the_tolerance_is_refused(skew: int) -> None:
    header = signature_header(BODY, [NEW], NOW + skew)
    with pytest.raises(SignatureRejected, match="more than 300 s"):
        verify(header, BODY, [NEW], NOW, 300)


def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted() -> None:
    assert verify(signature_header(BODY, [NEW], NOW - 300), BODY, [NEW], NOW, 300) == NOW - 300


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "no timestamp"),
        ("v1=abc", "no timestamp"),
        (f"t={NOW}", "no v1 signature"),
        (f"t=-5,v1={'0' * 64}", "no timestamp"),
        (f"t=12x,v1={'0' * 64}", "no timestamp"),
        (f"t={NOW},v1=", "no v1 signature"),
        (f"t={NOW},v0={'0' * 64}", "no v1 signature"),
    ],
)
def test_a_malformed_header_is_refused_with_the_reason(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        verify(header, BODY, [NEW], NOW, 300)


def test_a_digest_that_is_not_hex_is_refused_not_raised() -> None:
    with pytest.raises(SignatureRejected, match="does not match"):
        verify(f"t={NOW},v1=é", BODY, [NEW], NOW, 300)


def test_the_header_lists_one_signature_per_secret() -> None:
    timestamp, digests = parse_header(signature_header(BODY, [OLD, NEW], NOW))
    assert timestamp == NOW
    assert digests == [signature(BODY, OLD, NOW), signature(BODY, NEW, NOW)]
