"""Optional API-key authentication: ``Authorization: Bearer <api.key>``."""

from __future__ import annotations

import hmac
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


class ApiKeyCheck:
    """A dependency that answers 401 unless the request carries ``key`` as a bearer token."""

    def __init__(self, key: SecretStr) -> None:
        self._expected = key.get_secret_value().encode()

    async def __call__(
        self,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        """Raise the 401 problem unless ``credentials`` hold the key."""
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, self._expected):
            raise Problem(
                401,
                "unauthorized",
                "Unauthorized",
                "this endpoint needs the API key as 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
