"""The named queries: one definition per name across the SQL files, composed from shared
fragments, every name the code asks for defined, and every definition asked for."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest

from gateway.postgres.queries import QueryDefinitionError, queries_in, query

ROOT = Path(__file__).resolve().parents[2]
SQL_FOLDER = ROOT / "gateway" / "postgres" / "sql"
USED_NAME = re.compile(r"""\bquery\(\s*["']([a-z_][a-z0-9_]*)["']\s*\)""")
DEFINED = re.compile(r"^-- (?:name|fragment): ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def names_used_in_source() -> dict[str, list[str]]:
    """Every name passed to ``query("…")`` in the product's source, with the files asking."""
    used: dict[str, list[str]] = {}
    for package in ("gateway", "adapters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in USED_NAME.findall(path.read_text(encoding="utf-8")):
                used.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return used


def test_every_sql_file_of_the_folder_is_read_but_not_its_subfolders(tmp_path: Path) -> None:
    write(tmp_path, "orders.sql", "-- Orders.\n\n-- name: get_order\nSELECT 1;\n")
    write(tmp_path, "relay.sql", "-- name: read_batch\n-- The batch.\nSELECT 2;\n")
    write(tmp_path, "notes.txt", "-- name: not_sql\nSELECT 3;\n")
    write(tmp_path / "migrations", "0001_schema.up.sql", "-- name: get_order\nSELECT 4;\n")

    assert queries_in(tmp_path) == {"get_order": "SELECT 1;", "read_batch": "SELECT 2;"}


def test_a_name_defined_in_two_files_is_refused_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "orders.sql", "-- name: get_order\nSELECT 1;\n")
    write(
        tmp_path, "relay.sql", "-- name: read_batch\nSELECT 2;\n\n-- name: get_order\nSELECT 3;\n"
    )

    with pytest.raises(QueryDefinitionError) as refused:
        queries_in(tmp_path)

    message = str(refused.value)
    assert "'get_order'" in message
    assert "orders.sql" in message
    assert "relay.sql" in message


def test_a_name_defined_twice_in_one_file_is_refused(tmp_path: Path) -> None:
    write(
        tmp_path, "orders.sql", "-- name: get_order\nSELECT 1;\n\n-- name: get_order\nSELECT 2;\n"
    )

    with pytest.raises(QueryDefinitionError, match=r"'get_order' is defined twice: orders\.sql"):
        queries_in(tmp_path)


def test_section_comments_between_queries_stay_out_of_the_query_above(tmp_path: Path) -> None:
    write(
        tmp_path,
        "relay.sql",
        "-- name: first\nSELECT 1;\n\n-- Leases ---------\n\n-- name: second\nSELECT 2;\n",
    )

    assert queries_in(tmp_path)["first"] == "SELECT 1;"


def test_a_query_is_sent_without_the_comments_that_open_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "relay.sql",
        "-- name: batch\n-- The batch,\n  -- read once.\nSELECT 2 -- two\n-- of them\nFROM t;\n",
    )

    assert queries_in(tmp_path)["batch"] == "SELECT 2 -- two\n-- of them\nFROM t;"


def test_a_fragment_is_spliced_where_a_query_includes_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "keys.sql",
        "-- fragment: take_key\n-- Takes the key.\nINSERT INTO keys SELECT key FROM wanted\n"
        "RETURNING key\n\n"
        "-- name: take_one\nWITH wanted (key) AS (VALUES ($1))\n-- include: take_key\n;\n",
    )
    write(
        tmp_path,
        "orders.sql",
        "-- name: place\nWITH wanted (key) AS (SELECT $2 WHERE $2 IS NOT NULL),\n"
        "taken AS (\n    -- include: take_key\n)\nSELECT (SELECT key FROM taken);\n",
    )

    queries = queries_in(tmp_path)

    assert "take_key" not in queries
    assert queries["take_one"] == (
        "WITH wanted (key) AS (VALUES ($1))\n-- Takes the key.\n"
        "INSERT INTO keys SELECT key FROM wanted\nRETURNING key\n;"
    )
    assert queries["place"] == (
        "WITH wanted (key) AS (SELECT $2 WHERE $2 IS NOT NULL),\ntaken AS (\n"
        "    -- Takes the key.\n    INSERT INTO keys SELECT key FROM wanted\n    RETURNING key\n"
        ")\nSELECT (SELECT key FROM taken);"
    )


def test_including_an_unknown_fragment_is_refused_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "orders.sql", "-- name: place\nWITH taken AS (\n-- include: take_key\n)\n;\n")

    with pytest.raises(QueryDefinitionError, match=r"'place' \(orders\.sql\) includes 'take_key'"):
        queries_in(tmp_path)


def test_a_fragment_and_a_query_cannot_share_a_name(tmp_path: Path) -> None:
    write(tmp_path, "keys.sql", "-- fragment: take_key\nINSERT INTO keys VALUES (1)\n")
    write(tmp_path, "orders.sql", "-- name: take_key\nSELECT 1;\n")

    with pytest.raises(QueryDefinitionError, match=r"'take_key' is defined twice: keys\.sql"):
        queries_in(tmp_path)


def test_the_packaged_queries_are_read_from_every_owner_file() -> None:
    owners = sorted(
        entry.name
        for entry in files("gateway.postgres.sql").iterdir()
        if entry.is_file() and entry.name.endswith(".sql")
    )

    assert "queries.sql" not in owners
    assert len(owners) > 1
    assert query("read_outbox_batch").startswith("SELECT txid, partition, event_id")
    assert query("lock_order_inputs") == queries_in(SQL_FOLDER)["lock_order_inputs"]


def test_an_unknown_name_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="no query named 'no_such_query'"):
        query("no_such_query")


def test_every_name_the_source_asks_for_is_defined() -> None:
    defined = queries_in(SQL_FOLDER)
    used = names_used_in_source()

    assert used, "the scan found no query(...) call"
    missing = {name: where for name, where in used.items() if name not in defined}
    assert missing == {}


def test_every_defined_query_is_asked_for_by_the_source() -> None:
    used = names_used_in_source()

    unused = sorted(name for name in queries_in(SQL_FOLDER) if name not in used)
    assert unused == []


def test_every_fragment_is_included_and_every_name_defined_once() -> None:
    texts = {path.name: path.read_text(encoding="utf-8") for path in SQL_FOLDER.glob("*.sql")}
    defined = [name for text in texts.values() for name in DEFINED.findall(text)]
    fragments = [
        name
        for text in texts.values()
        for name in re.findall(r"^-- fragment: ([a-z_][a-z0-9_]*)\s*$", text, re.MULTILINE)
    ]
    included = {
        name
        for text in texts.values()
        for name in re.findall(r"^\s*-- include: ([a-z_][a-z0-9_]*)\s*$", text, re.MULTILINE)
    }

    assert len(defined) == len(set(defined))
    assert sorted(set(fragments) - included) == []


def test_the_idempotency_key_claim_is_written_once() -> None:
    # moves.sql copies a moving customer's keys, as they are, to its new shard: not a claim.
    claims = [
        path.name
        for path in sorted(SQL_FOLDER.glob("*.sql"))
        if path.name != "moves.sql"
        for _ in re.finditer(r"INSERT INTO idempotency_keys\b", path.read_text(encoding="utf-8"))
    ]

    assert claims == ["orders.sql"]
    assert "INSERT INTO idempotency_keys" in query("move_write_customer")
    assert "INSERT INTO idempotency_keys" in query("claim_idempotency_key")
    assert "INSERT INTO idempotency_keys" in query("lock_order_inputs")
