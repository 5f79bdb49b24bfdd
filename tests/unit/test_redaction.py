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


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgresql://u:s3c#r3t@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:s3c?r3t@h/db", "postgresql://u:***@h/db"),
        ("rediss://u:s3/cr3t@h:6379", "rediss://u:***@h:6379"),
        ("mongodb://u:a/b?c#d@e@h1,h2/db", "mongodb://u:***@h1,h2/db"),
        ("postgresql://u@h/db?pass%77ord=pw", "postgresql://u@h/db?pass%77ord=***"),
        ("postgresql://u@h/db?x=1&%70assword=pw&y=2", "postgresql://u@h/db?x=1&%70assword=***&y=2"),
        ("http://h:8086/query?db=o&%70=pw", "http://h:8086/query?db=o&%70=***"),
        ("https://h/x?api%5Fkey=k", "https://h/x?api%5Fkey=***"),
        ("https://h/x?page=2&q=pass%77ord", "https://h/x?page=2&q=pass%77ord"),
    ],
    ids=["hash", "question mark", "slash", "all", "%77", "%70", "influx %70", "%5F", "a value"],
)
def test_a_password_the_clients_accept_unescaped_or_its_name_percent_encoded_is_redacted(
    text: str, redacted: str
) -> None:
    assert redact_url(text) == redacted


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            'Unable connect to "admin:s3cr3t@127.0.0.1:59092"',
            'Unable connect to "admin:***@127.0.0.1:59092"',
        ),
        ("brokers: u:pw@b1:9092, b2:9092", "brokers: u:***@b1:9092, b2:9092"),
        ("(u:p/w#x@[::1]:5432)", "(u:***@[::1]:5432)"),
        ("connect to :pw@cache:6379 failed", "connect to :***@cache:6379 failed"),
    ],
)
def test_a_user_and_password_without_a_scheme_are_redacted(text: str, redacted: str) -> None:
    assert redact_url(text) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "mail ops@example.com",
        "Contact: ops@example.com",
        "customer 'a.b+c@example.com' exists",
        "at 12:30 the relay stopped",
        "ValueError: bad value @ line 3",
        "postgresql://u@h:5432/db",
        "kafka://b1:9092,b2:9092",
    ],
)
def test_e_mail_addresses_times_and_addresses_without_a_password_stay_readable(
    text: str,
) -> None:
    assert redact_url(text) == text


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ("options {'password': 'pw', 'user': 'u'}", "options {'password': '***', 'user': 'u'}"),
        ('{"password": "p\\"w", "port": 5432}', '{"password": "***", "port": 5432}'),
        ('{"api_key": "k", "token": "t"}', '{"api_key": "***", "token": "***"}'),
        ("{'sslpassword': None}", "{'sslpassword': ***}"),
        ("Authorization: Bearer tk", "Authorization: Bearer ***"),
        ("headers={'Authorization': 'Token tk'}", "headers={'Authorization': 'Token ***'}"),
        ("Authorization: ApiKey a2V5", "Authorization: ApiKey ***"),
        ("password: pw", "password: ***"),
        ("X-API-Key: k", "X-API-Key: ***"),
        ("{'user': 'u', 'host': 'h'}", "{'user': 'u', 'host': 'h'}"),
    ],
)
def test_a_message_masks_a_mappings_secret_members_and_credentials_headers(
    line: str, redacted: str
) -> None:
    assert redact_url(line) == redacted
    formatter = RedactingFormatter("%(message)s")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "%s", (line,), None)
    assert formatter.format(record) == redacted


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
    shapes = ["userinfo", "password-only", "query", "influx", "keyword", "unescaped", "bare"]
    shape = draw(st.sampled_from([*shapes, "encoded-name"]))
    # As written by hand: the clients take the password up to the last "@" unescaped.
    raw = "".join(c for c in secret if not c.isspace() and c not in "'\"\\")
    if shape == "userinfo":
        text = f"{scheme}://{draw(names)}:{encoded}@{hostlist}/{database}"
    elif shape == "unescaped":
        text = f"{scheme}://{draw(names)}:{raw}@{hostlist}/{database}"
        secret = raw
    elif shape == "bare":
        text = f"{draw(names)}:{raw}@{hostlist}"
        secret, readable = raw, [host, str(port), *(h for h, _ in more)]
        return text, secret, readable
    elif shape == "encoded-name":
        key = draw(query_keys)
        at = draw(st.integers(min_value=0, max_value=len(key) - 1))
        key = f"{key[:at]}%{ord(key[at]):02X}{key[at + 1 :]}"  # as the clients decode it
        text = f"{scheme}://{hostlist}/{database}?sslmode=require&{key}={encoded}&x=1"
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
