"""Optional API-key authentication: ``Authorization: Bearer <api.key>``."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from gateway.api.problems import Problem

_bearer = HTTPBearer(auto_error=False, description="The API key configured as api.key")


def authorized(authorization: str | None, key: SecretStr | None) -> bool:
    """Whether a request whose ``Authorization`` header is ``authorization`` may see what
    ``key`` guards: always when no key is configured, else only with ``Bearer <key>``."""
    if key is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), key.get_secret_value().encode())


def require_api_key(key: SecretStr) -> Callable[..., Awaitable[None]]:
    """A dependency that answers 401 unless the request carries ``key`` as a bearer token."""
    expected = key.get_secret_value().encode()

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, expected):
            raise Problem(
                401,
                "unauthorized",
                "Unauthorized",
                "this endpoint needs the API key as 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
