"""Secrets out of output: every form a URL or a DSN carries a password or a token in."""

from __future__ import annotations

import logging
import string
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.configuration.secrets import (
    REDACTED,
    RedactingFormatter,
    redact_url,
    redact_values,
)
from gateway.operations.store_reads import describe

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgresql://u:pw@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        (
            "postgresql://u:p%40ss@[::1]:5432/db?sslmode=require",
            "postgresql://u:***@[::1]:5432/db?sslmode=require",
        ),
        (
            "postgresql://u:pw@h1:5432,h2:5433/db?target_session_attrs=read-write",
            "postgresql://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write",
        ),
        (
            "postgresql://h:5432/db?user=u&password=pw&sslmode=require",
            "postgresql://h:5432/db?user=u&password=***&sslmode=require",
        ),
        (
            "postgresql:///db?host=/run/postgresql&sslpassword=pw",
            "postgresql:///db?host=/run/postgresql&sslpassword=***",
        ),
        ("host=h port=5432 dbname=db password=pw", "host=h port=5432 dbname=db password=***"),
        (
            "host=h password='a b\\' c' dbname=db",
            "host=h password=*** dbname=db",
        ),
        ("dbname=db sslpassword = pw", "dbname=db sslpassword = ***"),
        (
            "http://h:8086/write?db=orders&u=admin&p=pw",
            "http://h:8086/write?db=orders&u=admin&p=***",
        ),
        ("http://h:8086/query?token=tk#x", "http://h:8086/query?token=***#x"),
        ("https://h/x?api_key=k&a=1", "https://h/x?api_key=***&a=1"),
        ("kafka://user:pw@b1:9092,b2:9092", "kafka://user:***@b1:9092,b2:9092"),
        (
            "Client error '401' for url 'http://h/write?u=a&p=pw'",
            "Client error '401' for url 'http://h/write?u=a&p=***",
        ),
        ("not a url at all", "not a url at all"),
    ],
)
def test_each_form_is_redacted(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


def test_a_password_with_an_at_sign_is_redacted_whole() -> None:
    assert redact_url("postgresql://u:p@ss@h/db") == f"postgresql://u:{REDACTED}@h/db"


def test_log_records_are_redacted_message_arguments_and_tracebacks() -> None:
    formatter = RedactingFormatter("%(message)s")
    try:
        raise OSError(f"cannot reach postgresql://u:{SECRET}@h/db")
    except OSError as error:
        record = logging.LogRecord(
            "t",
            logging.WARNING,
            __file__,
            1,
            "failed: %s",
            (error,),
            exc_info=(type(error), error, error.__traceback__),
        )
    output = formatter.format(record)
    assert SECRET not in output
    assert "postgresql://u:***@h/db" in output


# --- property: whatever the shape, the secret goes and the address stays ---------------------

secrets = st.text(
    alphabet=string.ascii_letters + string.digits + "!$%&'()*+,;=:@/?#[] -._~\\\"",
    min_size=3,
    max_size=24,
).map(lambda s: "Q" + s)  # Q: in no generated host, port, name or key
names = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=3, max_size=10).map(
    lambda s: "x" + s
)
ports = st.integers(min_value=1, max_value=65535)
hosts = st.one_of(
    names.map(lambda n: n + ".example"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
schemes = st.sampled_from(
    ["postgresql", "postgres", "redis", "rediss", "mongodb", "http", "https", "kafka"]
)
query_keys = st.sampled_from(["password", "sslpassword", "token", "api_key", "p", "PASSWORD"])


@st.composite
def url_with_secret(draw: st.DrawFn) -> tuple[str, str, list[str]]:
    """A URL or DSN carrying a secret: (text, secret, the parts that must stay readable)."""
    secret = draw(secrets)
    encoded = quote(secret, safe="")
    host, port, database = draw(hosts), draw(ports), draw(names)
    scheme = draw(schemes)
    more = draw(st.lists(st.tuples(hosts, ports), max_size=2))
    hostlist = ",".join(f"{h}:{p}" for h, p in [(host, port), *more])
    shape = draw(st.sampled_from(["userinfo", "password-only", "query", "influx", "keyword"]))
    if shape == "userinfo":
        text = f"{scheme}://{draw(names)}:{encoded}@{hostlist}/{database}"
    elif shape == "password-only":
        text = f"{scheme}://:{encoded}@{hostlist}/{database}"
    elif shape == "query":
        key = draw(query_keys)
        text = f"{scheme}://{hostlist}/{database}?sslmode=require&{key}={encoded}&x=1"
    elif shape == "influx":
        text = f"http://{host}:{port}/write?db={database}&u={draw(names)}&p={encoded}"
        more = []
    else:
        quoted = "'" + secret.replace("\\", "\\\\").replace("'", "\\'") + "'"
        key = draw(st.sampled_from(["password", "sslpassword"]))
        text = f"host={host.strip('[]')} port={port} {key}={quoted} dbname={database}"
        return text, secret, [host.strip("[]"), f"port={port}", f"dbname={database}"]
    readable = [host, str(port), database, *(h for h, _ in more)]
    return text, secret, readable


@given(url_with_secret(), st.sampled_from(["{}", "error: {} failed", "connect('{}')"]))
def test_no_secret_survives_and_the_address_stays_readable(
    case: tuple[str, str, list[str]], context: str
) -> None:
    text, secret, readable = case
    redacted = redact_url(context.format(text))
    assert secret not in redacted
    assert quote(secret, safe="") not in redacted
    for part in readable:
        assert part in redacted


def test_a_store_clients_error_is_described_without_its_secret() -> None:
    error = OSError(f"cannot reach http://i.example:8086/query?db=o&u=a&p={SECRET}")
    described = describe(error)
    assert SECRET not in described
    assert described == "OSError: cannot reach http://i.example:8086/query?db=o&u=a&p=***"


def test_every_string_of_a_report_is_redacted() -> None:
    report = {
        "replicas": [{"replica": f"postgresql://u:{SECRET}@h/db", "lag": 1.5, "error": None}],
        "detail": (f"token={SECRET}",),
    }
    assert redact_values(report) == {
        "replicas": [{"replica": "postgresql://u:***@h/db", "lag": 1.5, "error": None}],
        "detail": ["token=***"],
    }
