"""Rendering the console's pages and refusing the requests it must refuse.

Every page carries the CSRF token of its browser (a cookie set with the first page, repeated
in every form), a Content-Security-Policy that allows only the console's own files, and no
caching.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from gateway.api.console import access
from gateway.api.exposure import host_allowed, host_refusal, is_loopback
from gateway.telemetry.propagation import trace_id_of

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["trace_id"] = trace_id_of
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def api_key(request: Request) -> str | None:
    """The configured API key, if any (only ever compared, never shown)."""
    key = request.app.state.settings.api.key
    return None if key is None else str(key.get_secret_value())


def csrf_token(request: Request) -> str:
    """The browser's CSRF token: its cookie's, or a new one the response will set."""
    token = request.cookies.get(access.CSRF_COOKIE)
    if token:
        return token
    if not hasattr(request.state, "new_csrf_token"):
        request.state.new_csrf_token = access.new_csrf_token()
    return str(request.state.new_csrf_token)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """``template`` rendered with ``context``, the CSRF token and whether to offer a logout."""
    token = csrf_token(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            **(context or {}),
            "csrf_field": access.CSRF_FIELD,
            "csrf_token": token,
            "with_login": api_key(request) is not None,
        },
        status_code=status_code,
    )
    if request.cookies.get(access.CSRF_COOKIE) != token:
        set_cookie(request, response, access.CSRF_COOKIE, token, max_age=None)
    response.headers.update(SECURITY_HEADERS)
    return response


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Set a console cookie: HttpOnly, SameSite=Strict, for ``/console`` only, and Secure
    when the page came over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def message(
    request: Request, title: str, text: str, status_code: int, **context: Any
) -> HTMLResponse:
    """A page that says one thing: why a request was refused or failed."""
    return render(request, "message.html", {"title": title, "text": text, **context}, status_code)


def login_page(
    request: Request, status_code: int, error: str | None = None, next_page: str = "/console"
) -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", {"error": error, "next_page": next_page}, status_code)


def session_id(request: Request) -> str | None:
    """The session id of the request's cookie, if a key is configured and the cookie is
    signed with it and fresh (whether logging out ended the session is PostgreSQL's to say)."""
    key = api_key(request)
    if key is None:
        return None
    token = request.cookies.get(access.SESSION_COOKIE)
    return access.verified_session(key, token, access.now(), access.SESSION_MAX_AGE_SECONDS)


def refusal(request: Request) -> HTMLResponse | None:
    """``None`` if the request may go on: with a key, when its session cookie is signed and
    fresh; without one, when it comes from a loopback address and its ``Host`` names this
    machine. Else the login form (401), or a 403 page saying which rule refused it."""
    if api_key(request) is not None:
        return None if session_id(request) is not None else login_required(request)
    client = request.client
    if client is None or not is_loopback(client.host):
        return message(
            request,
            "Refused",
            "Without api.key the console answers only clients on this machine (loopback). "
            "Set api.key to use it from elsewhere.",
            403,
        )
    host = request.headers.get("host")
    if not host_allowed(host, request.app.state.settings.api.host):
        return message(request, "Refused", host_refusal(host) + ".", 403)
    return None


def login_required(request: Request) -> HTMLResponse:
    """The login form (401), leading back to the page asked for."""
    return login_page(request, 401, next_page=safe_next(request.url.path))


async def form_of(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form (the first value of each)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body).items()}


def forged(request: Request, form: Mapping[str, str]) -> HTMLResponse | None:
    """``None`` if a state-changing request comes from the console's own page in this
    browser (its Origin or Referer, and the CSRF token of its form); else a 403 page."""
    if not access.same_origin(
        request.headers.get("origin"),
        request.headers.get("referer"),
        request.headers.get("host"),
        request.url.scheme,
    ):
        return message(
            request,
            "Refused",
            "This request does not come from a page of this console (its Origin or "
            "Referer header names another site, or neither was sent).",
            403,
        )
    if not access.csrf_valid(request.cookies.get(access.CSRF_COOKIE), form.get(access.CSRF_FIELD)):
        return message(
            request,
            "Refused",
            "The form's CSRF token is missing or does not match this browser's: reload the "
            "page and try again.",
            403,
        )
    return None


def safe_next(path: str) -> str:
    """Where to go after logging in: a console path, else the console's home (never another
    site)."""
    if path.startswith("/console") and not path.startswith("//") and "\\" not in path:
        return path
    return "/console"
