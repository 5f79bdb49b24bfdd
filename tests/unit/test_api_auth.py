"""Who may see what the API key guards: no I/O."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gateway.api.auth import authorized

KEY = SecretStr("the-api-key-0123456789")


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("Bearer the-api-key-0123456789", True),
        ("bearer the-api-key-0123456789", True),
        ("Bearer the-api-key-012345678", False),
        ("Basic the-api-key-0123456789", False),
        ("the-api-key-0123456789", False),
        ("Bearer", False),
        ("", False),
        (None, False),
    ],
)
def test_with_a_key_only_the_bearer_key_is_authorized(header: str | None, allowed: bool) -> None:
    assert authorized(header, KEY) is allowed


def test_without_a_key_every_request_is_authorized() -> None:
    assert authorized(None, None) and authorized("Bearer anything", None)
