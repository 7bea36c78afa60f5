"""Reports from real runs: what they hold, their JSON, their schema, their files.

``tests/fixtures/golden_report_v1.json`` was written by a real run of sqlwatch
0.1.0 on SQLite (a small app with named watches, a lazy-load loop, an
executemany, a slow query, duplicates and an error, with ``capture_params``),
with the records of components that were not finished then (N+1 findings,
unused eager loads, pools, leaks, sessions) added by hand in their final
shape. It is frozen: every later version must keep reading it. Never
regenerate it; add a ``golden_report_v2.json`` next to it when the schema
version changes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.orm import Session, selectinload

import sqlwatch
from sqlwatch import Report, ReportError
from sqlwatch import records as records_module
from sqlwatch.report import SCHEMA_VERSION
from sqlwatch.schema import load_report_schema
from tests.integration.helpers import call_site_below, install_sleep, parse_iso, sleep_sql
from tests.models import Base, Tag, User, seed

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden_report_v1.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_report_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture
def db(engine: Engine) -> Engine:
    install_sleep(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    sqlwatch.instrument(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 0"))
    return engine


def busy_report(db: Engine) -> Report:
    """A report with something in every field this part of sqlwatch fills."""
    with sqlwatch.watch("busy", slow_query_ms=20, capture_params=True) as w:
        with Session(db) as session:
            with sqlwatch.watch("list"):
                for user in session.scalars(select(User).order_by(User.id)):
                    _ = user.addresses
            session.execute(insert(Tag), [{"name": "a"}, {"name": "b"}])
            session.commit()
        with db.connect() as conn:
            conn.execute(text(sleep_sql(db, 40)))
            for _ in range(2):
                conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": 1})
            with pytest.raises(Exception, match="missing_table"):
                conn.execute(text("SELECT * FROM missing_table"))
    return w.report


# -- what a report holds ----------------------------------------------------------------


def test_process_report_starts_at_the_first_instrument(engine: Engine) -> None:
    empty = sqlwatch.report()
    assert (empty.query_count, empty.statements, empty.started_at) == (0, (), "")
    with engine.connect() as conn:
        conn.execute(text("SELECT 'not instrumented yet'"))

    before = datetime.now(timezone.utc)
    sqlwatch.instrument(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # outside any watch: the process report has it
    with sqlwatch.watch(), engine.connect() as conn:
        conn.execute(text("SELECT 2"))  # inside a watch: counted process-wide as well

    report = sqlwatch.report()
    assert report.name == "process"
    sqls = [s.sql for s in report.statements]
    assert "SELECT 'not instrumented yet'" not in sqls
    assert sqls[-2:] == ["SELECT 1", "SELECT 2"]
    assert parse_iso(report.started_at) >= before - timedelta(seconds=1)
    assert sqlwatch.instrument(engine).report().query_count == report.query_count


def test_max_statements_keeps_the_first_and_counts_the_rest(db: Engine) -> None:
    with sqlwatch.watch(max_statements=3) as w, db.connect() as conn:
        for i in range(5):
            conn.execute(text(f"SELECT {i}"))

    report = w.report
    assert [s.sql for s in report.statements] == ["SELECT 0", "SELECT 1", "SELECT 2"]
    assert report.dropped_statements == 2
    assert report.query_count == 5
    assert w.query_count == 5
    [stats] = report.fingerprints
    assert stats.count == 5


def test_max_statements_of_the_process_report(engine: Engine) -> None:
    sqlwatch.instrument(engine, max_statements=2)
    with engine.connect() as conn:
        for i in range(6):
            conn.execute(text(f"SELECT {i}"))
    report = sqlwatch.report()
    assert len(report.statements) == 2
    assert report.dropped_statements == report.query_count - 2
    assert {f.normalized: f.count for f in report.fingerprints}["SELECT ?"] == 6


def test_fingerprint_stats(db: Engine) -> None:
    with sqlwatch.watch() as w, db.connect() as conn:
        for user_id in range(3):
            site_a = call_site_below()
            conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})
        for user_id in range(2):
            site_b = call_site_below()
            conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})
        conn.execute(text("SELECT count(*) FROM addresses"))

    report = w.report
    by_sql = {s.normalized: s for s in report.fingerprints}
    stats = by_sql["SELECT name FROM users WHERE id = ?"]
    durations = [s.duration_ms for s in report.statements if s.fingerprint == stats.fingerprint]
    assert stats.count == len(durations) == 5
    assert (stats.operation, stats.tables) == ("SELECT", ("users",))
    assert stats.call_sites == (site_a, site_b)  # most frequent first
    assert stats.total_ms == pytest.approx(sum(durations), abs=1e-3)
    assert stats.mean_ms == pytest.approx(stats.total_ms / 5, abs=1e-3)
    assert stats.max_ms == pytest.approx(max(durations), abs=1e-3)
    assert stats.p50_ms <= stats.p95_ms <= stats.p99_ms <= stats.max_ms
    assert min(durations) * 0.98 - 1e-4 <= stats.p50_ms  # within 1%, rounded to 0.1 us
    assert sum(n for _, n in stats.histogram) == 5
    assert by_sql["SELECT count(*) FROM addresses"].count == 1
    totals = [s.total_ms for s in report.fingerprints]
    assert totals == sorted(totals, reverse=True)  # most total time first
    assert report.query_count == 6
    assert report.total_query_ms == pytest.approx(
        sum(s.duration_ms for s in report.statements), abs=1e-3
    )


def test_slow_queries(db: Engine) -> None:
    threshold = 30
    with sqlwatch.watch(slow_query_ms=threshold) as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
        site = call_site_below()
        conn.execute(text(sleep_sql(db, 2 * threshold)))
        conn.execute(text("SELECT 2"))

    report = w.report
    slow_sqls = [s.sql for s in report.slow_queries]
    assert sleep_sql(db, 2 * threshold) in slow_sqls
    [slow] = [s for s in report.slow_queries if s.sql == sleep_sql(db, 2 * threshold)]
    assert slow.duration_ms >= 2 * threshold
    assert slow.call_site == site
    # a statement is slow exactly when its own duration is at or over the threshold
    for statement in report.statements:
        assert (statement.sql in slow_sqls) == (statement.duration_ms >= threshold)


def test_slow_queries_of_the_process_report_use_the_engines_threshold(engine: Engine) -> None:
    install_sleep(engine)
    sqlwatch.instrument(engine, slow_query_ms=30)
    with engine.connect() as conn:
        conn.execute(text(sleep_sql(engine, 60)))
    with sqlwatch.watch(slow_query_ms=10_000) as w, engine.connect() as conn:
        conn.execute(text(sleep_sql(engine, 61)))

    assert w.report.slow_queries == ()  # the watch's own threshold
    process_slow = [s.sql for s in sqlwatch.report().slow_queries]
    assert sleep_sql(engine, 60) in process_slow
    assert sleep_sql(engine, 61) in process_slow


def test_duplicates(db: Engine) -> None:
    query = text("SELECT name FROM users WHERE id = :id")
    with sqlwatch.watch() as w, db.connect() as conn:
        site = call_site_below(2)
        for _ in range(3):
            conn.execute(query, {"id": 1})
        conn.execute(query, {"id": 2})  # same SQL, other parameters: not a duplicate
        conn.execute(text("SELECT count(*) FROM tags"))

    [duplicate] = w.report.duplicates
    assert duplicate.count == 3
    assert "users" in duplicate.sql
    assert duplicate.call_sites == (site,)


def test_errors_are_counted_by_class(db: Engine) -> None:
    with sqlwatch.watch() as w:
        for _ in range(2):
            with pytest.raises(Exception, match="no_such") as caught, db.connect() as conn:
                conn.execute(text("SELECT * FROM no_such"))
        with pytest.raises(Exception) as duplicate, db.begin() as conn:
            conn.execute(insert(User).values(id=1, name="again"))

    missing = type(caught.value.orig).__name__  # type: ignore[attr-defined]
    integrity = type(duplicate.value.orig).__name__  # type: ignore[attr-defined]
    assert w.report.errors == {missing: 2, integrity: 1}
    assert [s.error for s in w.queries] == [missing, missing, integrity]


def test_operations_and_tables(db: Engine) -> None:
    with sqlwatch.watch() as w, Session(db) as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        for user in users:
            _ = user.addresses
        session.add(Tag(name="t"))
        session.commit()

    report = w.report
    assert report.operations == {"SELECT": 4, "INSERT": 1}
    assert report.tables == {"addresses": 3, "users": 1, "tags": 1}
    assert list(report.operations) == ["SELECT", "INSERT"]  # most frequent first


def test_resources(db: Engine) -> None:
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
        deadline = time.process_time() + 0.02
        while time.process_time() < deadline:  # some CPU time for cpu_s to see
            pass

    resources = w.report.resources
    assert resources.rss_start_bytes > 0
    assert resources.rss_end_bytes > 0
    assert resources.rss_peak_bytes >= max(resources.rss_start_bytes, resources.rss_end_bytes)
    assert resources.cpu_s > 0
    process = sqlwatch.report().resources
    assert process.rss_start_bytes > 0
    assert process.cpu_s >= resources.cpu_s


def test_fields_other_parts_fill_are_present_and_empty(db: Engine) -> None:
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
    data = w.report.to_dict()
    for key in ("n_plus_one", "unused_eager_loads", "leaks", "pools", "sessions"):
        assert key in data


# -- JSON and schema ----------------------------------------------------------------------


def test_fresh_reports_validate_against_the_schema(
    db: Engine, validator: jsonschema.Draft202012Validator
) -> None:
    report = busy_report(db)
    assert report.slow_queries
    assert report.duplicates
    assert report.errors
    assert report.scopes
    assert any(s.params for s in report.statements)
    for data in (report.to_dict(), sqlwatch.report().to_dict(), Report().to_dict()):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == []


def test_reports_with_every_component_validate_against_the_schema(
    db: Engine, validator: jsonschema.Draft202012Validator
) -> None:
    """Pools, leaks, sessions, N+1 and unused eager loads, as their components write them."""
    session: Session | None = None
    conn: Connection | None = None
    try:
        with sqlwatch.watch("everything") as w:
            session = Session(db)  # left open: an unclosed session
            query = select(User).options(selectinload(User.hobbies))  # never read
            for user in session.scalars(query).all():
                _ = user.addresses  # a lazy-load loop: an N+1
            conn = db.connect()  # not returned before the watch ends: a leak
            conn.execute(text("SELECT 1"))
        report = w.report
    finally:
        if conn is not None:
            conn.close()
        if session is not None:
            session.close()

    assert report.pools
    assert report.leaks
    assert report.sessions.unclosed == 1
    assert report.n_plus_one
    assert report.unused_eager_loads
    for data in (report.to_dict(), sqlwatch.report().to_dict()):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(data)]
        assert errors == []


def _first_error(validator: jsonschema.Draft202012Validator, data: dict[str, Any]) -> str | None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    return None if error is None else error.json_path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d.update(schema_version=2), "$.schema_version"),
        (lambda d: d.update(query_count="9"), "$.query_count"),
        (lambda d: d.update(query_count=-1), "$.query_count"),
        (lambda d: d["operations"].update(SELECT=1.5), "$.operations.SELECT"),
        (lambda d: d.pop("fingerprints"), "$"),
        (lambda d: d["statements"][0].update(duration_ms="fast"), "$.statements[0].duration_ms"),
        (lambda d: d["statements"][0].update(rowcount=1.5), "$.statements[0].rowcount"),
        (lambda d: d["statements"][0].update(executemany=0), "$.statements[0].executemany"),
        (
            lambda d: d["statements"][0].update(started_at="yesterday"),
            "$.statements[0].started_at",
        ),
        (lambda d: d["statements"][0].update(tables="users"), "$.statements[0].tables"),
        (lambda d: d["statements"][0].update(surprise=1), "$.statements[0]"),
        (lambda d: d["statements"][0].pop("call_site"), "$.statements[0]"),
        (
            lambda d: d["fingerprints"][0].update(histogram=[[1, 2, 3]]),
            "$.fingerprints[0].histogram[0]",
        ),
        (
            lambda d: d["fingerprints"][0].update(histogram=[["1", 2]]),
            "$.fingerprints[0].histogram[0][0]",
        ),
        (
            lambda d: d["fingerprints"][0].update(call_sites="x.py:1"),
            "$.fingerprints[0].call_sites",
        ),
        (lambda d: d["resources"].update(cpu_s=None), "$.resources.cpu_s"),
        (lambda d: d["sessions"].update(opened="1"), "$.sessions.opened"),
        (lambda d: d["duplicates"][0].update(count=1), "$.duplicates[0].count"),
        (
            lambda d: d["scopes"][0].update(queries_per_run={"p50": 1}),
            "$.scopes[0].queries_per_run",
        ),
    ],
)
def test_schema_rejects_a_wrong_report(
    db: Engine,
    validator: jsonschema.Draft202012Validator,
    change: Any,
    path: str,
) -> None:
    data = busy_report(db).to_dict()
    assert _first_error(validator, data) is None
    change(data)
    assert _first_error(validator, data) == path


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["n_plus_one"][0].update(kind="loop"), "$.n_plus_one[0].kind"),
        (lambda d: d["n_plus_one"][0].update(count="3"), "$.n_plus_one[0].count"),
        (lambda d: d["pools"]["shop"].update(size="5"), "$.pools.shop.size"),
        (lambda d: d["pools"]["shop"]["wait_ms"].pop("p95"), "$.pools.shop.wait_ms"),
        (lambda d: d["leaks"][0].update(kind="lost"), "$.leaks[0].kind"),
        (lambda d: d["unused_eager_loads"][0].update(count=None), "$.unused_eager_loads[0].count"),
    ],
)
def test_schema_rejects_wrong_records_of_other_parts(
    validator: jsonschema.Draft202012Validator, change: Any, path: str
) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    change(data)
    assert _first_error(validator, data) == path


def test_schema_admits_new_top_level_keys(validator: jsonschema.Draft202012Validator) -> None:
    data = Report().to_dict()
    data["written_by_a_newer_version"] = {"anything": [1, 2]}
    assert _first_error(validator, data) is None


RECORDS = {
    "Statement": records_module.Statement,
    "FingerprintStats": records_module.FingerprintStats,
    "NPlusOne": records_module.NPlusOne,
    "UnusedEagerLoad": records_module.UnusedEagerLoad,
    "Duplicate": records_module.Duplicate,
    "PoolStats": records_module.PoolStats,
    "Leak": records_module.Leak,
    "SessionStats": records_module.SessionStats,
    "Resources": records_module.Resources,
    "ScopeSummary": records_module.ScopeSummary,
}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_schema_describes_every_field_of_every_record(name: str) -> None:
    """A field added to a record must be added to the schema too (and the reverse)."""
    definition = load_report_schema()["$defs"][name]
    fields = {f.name for f in dataclasses.fields(RECORDS[name])}
    assert set(definition["properties"]) == fields
    # fields added since schema version 1: reports written before them stay valid
    optional = {"Statement": {"params"}, "FingerprintStats": {"call_site_counts"}}.get(name, set())
    assert set(definition["required"]) == fields - optional


def test_schema_describes_every_field_of_the_report() -> None:
    schema = load_report_schema()
    fields = {f.name for f in dataclasses.fields(Report)}
    assert set(schema["properties"]) == fields | {"schema_version", "sqlwatch_version"}
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_load_report_schema_returns_a_fresh_copy() -> None:
    first = load_report_schema()
    first["properties"].clear()
    assert load_report_schema()["properties"]


def test_to_json_is_to_dict(db: Engine) -> None:
    report = busy_report(db)
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert data["schema_version"] == 1
    assert data["sqlwatch_version"] == sqlwatch.__version__
    assert json.loads(report.to_json(indent=None)) == data


def test_from_dict_round_trip(db: Engine) -> None:
    with sqlwatch.watch("round trip", slow_query_ms=20) as w, Session(db) as session:
        for user in session.scalars(select(User)):
            _ = user.addresses
        with sqlwatch.watch("inner"):
            session.execute(text(sleep_sql(db, 25)))
    report = w.report
    # the JSON form leaves the process: literal values (the sleep's) are redacted
    assert report != report.redacted()
    assert Report.from_dict(report.to_dict()) == report.redacted()
    assert Report.from_dict(json.loads(report.to_json())) == report.redacted()
    assert report.redacted().redacted() == report.redacted()


def test_parameters_survive_the_round_trip_as_json_values(db: Engine) -> None:
    report = busy_report(db)
    loaded = Report.from_dict(json.loads(report.to_json()))
    for before, after in zip(report.statements, loaded.statements, strict=True):
        assert dataclasses.replace(before, params=None) == dataclasses.replace(after, params=None)
        assert json.dumps(after.params) == json.dumps(before.params)


def test_save_and_load(db: Engine, tmp_path: Path) -> None:
    report = busy_report(db)
    target = tmp_path / "nested" / "dir" / "report.json"
    written = report.save(target)
    assert written == target
    assert Report.load(target) == Report.from_dict(report.to_dict())
    assert json.loads(target.read_text(encoding="utf-8")) == report.to_dict()
    assert os.listdir(target.parent) == ["report.json"]  # no temporary file left
    report.save(str(target))  # over an existing file, from a str path
    assert os.listdir(target.parent) == ["report.json"]


@pytest.mark.parametrize("crash", [OSError("disk full"), KeyboardInterrupt()])
def test_save_is_atomic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: BaseException
) -> None:
    target = tmp_path / "report.json"
    old = Report(name="old", query_count=1)
    old.save(target)
    before = target.read_bytes()

    real_to_json = Report.to_json

    def crash_halfway(self: Report, *, indent: int | None = 2) -> str:
        # the write has started (the temporary file exists) when the crash comes
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        raise crash

    monkeypatch.setattr(Report, "to_json", crash_halfway)
    with pytest.raises(type(crash)):
        Report(name="new", query_count=2).save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["report.json"]

    def crash_on_rename(source: str, target: str) -> None:
        raise crash

    monkeypatch.setattr(Report, "to_json", real_to_json)
    monkeypatch.setattr(os, "replace", crash_on_rename)  # the rename that publishes it
    with pytest.raises(type(crash)):
        Report(name="new", query_count=2).save(target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["report.json"]
    assert Report.load(target).name == "old"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"name": "x"}', "schema_version is None"),
        ('{"schema_version": 2, "name": "x"}', "schema_version is 2"),
        ('{"schema_version": "1"}', "schema_version is '1'"),
        ('{"schema_version": 1, "statements": 5}', "malformed"),
        ('{"schema_version": 1, "fingerprints": [{"count": 1}]}', "malformed"),
    ],
)
def test_load_bad_files_is_a_one_line_report_error(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        Report.load(path)
    text_message = str(caught.value)
    assert message in text_message
    assert str(path) in text_message
    assert "\n" not in text_message
    assert caught.value.__cause__ is None  # no chained traceback behind the message
    assert isinstance(caught.value, sqlwatch.SQLWatchError)  # one base for all of ours


def test_load_a_directory_or_binary_file_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError):
        Report.load(tmp_path)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ReportError):
        Report.load(binary)


def _golden_with(where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The golden report's JSON with one value replaced (``value`` DELETE: removed)."""
    data: dict[str, Any] = json.loads(GOLDEN.read_text(encoding="utf-8"))
    parent: Any = data
    for key in where[:-1]:
        parent = parent[key]
    if value == "DELETE":
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    return data


def _ids(cases: list[tuple[Any, ...]]) -> list[str]:
    return [str(case[-1]) for case in cases]


WRONG_VALUES = [
    (("total_query_ms",), None, "total_query_ms must be a finite number, got null"),
    (("duration_ms",), "12", "duration_ms must be a finite number, got the string '12'"),
    (("query_count",), 1.5, "query_count must be an integer, got 1.5"),
    (("query_count",), True, "query_count must be an integer, got true"),
    (("name",), None, "name must be a string, got null"),
    (("name",), ["a"], "name must be a string, got a list"),
    (("operations",), [], "operations must be an object, got a list"),
    (("tables", "users"), "3", "tables[\"users\"] must be an integer, got the string '3'"),
    (("statements", 0, "sql"), 5, "statements[0].sql must be a string, got 5"),
    (("statements", 0, "executemany"), 0, "statements[0].executemany must be true or false"),
    (("slow_queries", 0, "duration_ms"), None, "slow_queries[0].duration_ms must be a finite"),
    (("fingerprints", 0, "normalized"), None, "fingerprints[0].normalized must be a string"),
    (("fingerprints", 0, "p95_ms"), "1", "fingerprints[0].p95_ms must be a finite number"),
    (
        ("fingerprints", 0, "call_sites"),
        "app.py:1 in f",
        "fingerprints[0].call_sites must be a list",
    ),
    (("fingerprints", 0, "call_sites", 0), 7, "fingerprints[0].call_sites[0] must be a string"),
    (("fingerprints", 0, "histogram", 0), [1, 2, 3], "histogram[0] must be a list of 2, got 3"),
    (("fingerprints", 0, "normalized"), "DELETE", "fingerprints[0].normalized is missing"),
    (("n_plus_one", 0, "call_site"), 5, "n_plus_one[0].call_site must be a string or null, got 5"),
    (("n_plus_one", 0, "fingerprint"), ["a"], "n_plus_one[0].fingerprint must be a string"),
    (("n_plus_one", 0, "normalized"), 3, "n_plus_one[0].normalized must be a string, got 3"),
    (("n_plus_one", 0, "suggestion"), None, "n_plus_one[0].suggestion must be a string"),
    (("n_plus_one", 0, "relationship"), 1, "n_plus_one[0].relationship must be a string or null"),
    (("n_plus_one", 0, "count"), "3", "n_plus_one[0].count must be an integer"),
    (("duplicates", 0, "call_sites"), [None], "duplicates[0].call_sites[0] must be a string"),
    (("pools", "shop", "checkouts"), None, 'pools["shop"].checkouts must be an integer'),
    (("sessions", "unclosed_call_sites"), "x", "sessions.unclosed_call_sites must be a list"),
    (("resources", "cpu_s"), {}, "resources.cpu_s must be a finite number, got an object"),
    (
        ("scopes", 0, "query_count"),
        "3",
        "scopes[0].query_count must be an integer, got the string",
    ),
    (("scopes", 0, "query_count"), 10**400, "scopes[0].query_count must be an integer, got an"),
    (("scopes", 0, "runs"), None, "scopes[0].runs must be an integer, got null"),
    (("scopes", 0), "t", "scopes[0] must be an object, got the string 't'"),
]


@pytest.mark.parametrize(("where", "value", "message"), WRONG_VALUES, ids=_ids(WRONG_VALUES))
def test_from_dict_rejects_a_wrong_value_naming_its_field(
    where: tuple[str | int, ...], value: Any, message: str
) -> None:
    with pytest.raises(ReportError) as caught:
        Report.from_dict(_golden_with(where, value))
    text_message = str(caught.value)
    assert text_message.startswith("malformed sqlwatch report: ")
    assert message in text_message
    assert "\n" not in text_message
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("where", "value", "message"), WRONG_VALUES[::4], ids=_ids(WRONG_VALUES[::4])
)
def test_load_rejects_a_wrong_value_naming_its_field(
    tmp_path: Path, where: tuple[str | int, ...], value: Any, message: str
) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_golden_with(where, value)), encoding="utf-8")
    with pytest.raises(ReportError, match="malformed sqlwatch report") as caught:
        Report.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 1, "total_query_ms": NaN}', "total_query_ms must be a finite number"),
        ('{"schema_version": 1, "duration_ms": 1e400}', "duration_ms must be a finite number"),
        ('{"schema_version": true}', "schema_version is True"),
        ('{"schema_version": 1, "query_count": 1' + "0" * 5000 + "}", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"schema_version": 1, "scopes": [' * 20_000, "nested too deeply"),
        (
            '{"schema_version": 1, "statements": [{"sql": "SELECT 1", "operation": "SELECT", '
            '"tables": [], "fingerprint": "a", "normalized": "SELECT ?", "duration_ms": 1, '
            '"rowcount": null, "executemany": false, "started_at": "", "engine": "e", '
            '"call_site": null, "relationship": null, "error": null, "params": '
            + "[" * 900
            + "]" * 900
            + "}]}",
            "statements[0].params is nested too deeply (over 64 levels)",
        ),
    ],
)
def test_load_rejects_numbers_and_nesting_json_readers_cannot_hold(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "report.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        Report.load(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_from_dict_takes_integral_floats_as_integers() -> None:
    data = _golden_with(("query_count",), 7.0)
    assert Report.from_dict(data).query_count == 7
    assert type(Report.from_dict(data).query_count) is int


def _leaves(value: Any) -> list[Any]:
    """The scalars of parameters, whatever their shape (a dict, a tuple, a list of them)."""
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


@pytest.mark.parametrize(
    ("value", "written"),
    [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")],
)
def test_non_finite_parameters_are_written_as_strings_in_valid_json(
    db: Engine,
    tmp_path: Path,
    validator: jsonschema.Draft202012Validator,
    value: float,
    written: str,
) -> None:
    with sqlwatch.watch("w", capture_params=True) as w, db.connect() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE numbers (x FLOAT)"))
        conn.execute(text("SELECT :x, :y"), {"x": value, "y": 1.5})
        conn.execute(text("INSERT INTO numbers (x) VALUES (:x)"), [{"x": 1.5}, {"x": value}])
    report = w.report
    kept = [s.params for s in report.statements if s.operation in ("SELECT", "INSERT")]
    assert [repr(leaf) for leaf in _leaves(kept)] == [repr(value), "1.5", "1.5", repr(value)]

    def strict(token: str) -> None:
        raise AssertionError(f"not JSON: {token}")

    data = json.loads(report.to_json(), parse_constant=strict)
    params = [s["params"] for s in data["statements"] if s["operation"] in ("SELECT", "INSERT")]
    assert _leaves(params) == [written, 1.5, 1.5, written]
    assert _first_error(validator, data) is None
    target = report.save(tmp_path / "report.json")
    json.loads(target.read_text(encoding="utf-8"), parse_constant=strict)
    loaded = Report.load(target).statements
    assert _leaves([s.params for s in loaded if s.operation in ("SELECT", "INSERT")]) == [
        written,
        1.5,
        1.5,
        written,
    ]


# -- the golden report ------------------------------------------------------------------


def _contained(old: Any, new: Any, path: str = "$") -> list[str]:
    """Where ``new`` lost or changed something ``old`` had (additions are fine)."""
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [path]
        problems = []
        for key, value in old.items():
            if key not in new:
                problems.append(f"{path}.{key} (missing)")
            else:
                problems += _contained(value, new[key], f"{path}.{key}")
        return problems
    if isinstance(old, list):
        if not isinstance(new, list) or len(old) != len(new):
            return [path]
        return [
            p
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for p in _contained(a, b, f"{path}[{i}]")
        ]
    return [] if old == new and type(old) is type(new) else [path]


def test_golden_report_still_loads() -> None:
    report = Report.load(GOLDEN)

    assert report.name == "GET /users"
    assert report.query_count == 9
    assert report.operations == {"SELECT": 8, "INSERT": 1}
    lazy = report.statements[1]
    assert lazy.relationship == "User.addresses"
    assert lazy.call_site == "app.py:23 in <dictcomp>"
    assert report.statements[4].executemany is True
    assert report.statements[-1].error == "OperationalError"
    assert report.slow_queries[0].sql == "SELECT sleep_ms(60)"
    assert report.fingerprints[0].histogram == ((904, 1),)
    assert isinstance(report.fingerprints[0].histogram[0], tuple)
    assert report.duplicates[0].count == 2
    assert report.errors == {"OperationalError": 1}
    [finding] = report.n_plus_one
    assert (finding.kind, finding.relationship, finding.count) == (
        "lazy_load",
        "User.addresses",
        3,
    )
    assert finding.loaded_by is not None
    assert report.unused_eager_loads[0].relationship == "User.hobbies"
    assert report.pools["shop"].wait_ms == {"p50": 0.004, "p95": 0.011, "max": 0.012}
    assert report.pools["shop"].timeouts == 0
    assert report.leaks[0].kind == "unreturned"
    assert report.sessions.opened == 1
    assert report.resources.rss_start_bytes > 0
    assert [s.name for s in report.scopes] == ["list_users", "add_tags"]
    assert report.scopes[0].n_plus_one[0].relationship == "User.addresses"
    assert isinstance(report.scopes[0].queries_per_run["p50"], float)


def test_golden_report_validates_against_the_schema(
    validator: jsonschema.Draft202012Validator,
) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert _first_error(validator, data) is None


def test_golden_report_keeps_every_value_when_written_again() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    again = Report.load(GOLDEN).to_dict()
    golden.pop("sqlwatch_version")
    assert _contained(golden, again) == []


def test_golden_report_merges_with_a_fresh_one(db: Engine) -> None:
    golden = Report.load(GOLDEN)
    fresh = busy_report(db)
    merged = golden.merge(fresh)
    assert merged.query_count == golden.query_count + fresh.query_count
    assert sum(merged.errors.values()) == 2
    assert merged.statements == golden.statements + fresh.statements
    assert {s.name for s in merged.scopes} >= {"list_users", "add_tags", "list"}
    copy.deepcopy(merged)  # plain data all the way down


# -- redaction by dialect ----------------------------------------------------------


def test_saved_reports_redact_sql_as_the_engine_s_dialect_lexes_it(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """SQLite reads ``[it's]`` as a column name. Lexed as generic SQL it opened a
    string that closed at the quote before the value, and the value left in the
    report's statements, duplicates and N+1 example."""
    sqlwatch.instrument(sqlite_engine, name="shop")  # a name that does not say the dialect
    with sqlite_engine.begin() as conn:
        conn.execute(text("CREATE TABLE t ([it's] INTEGER, token TEXT)"))
    with sqlwatch.watch("tokens") as watch, sqlite_engine.connect() as conn:
        for n in range(3):
            conn.execute(text("SELECT [it's] FROM t WHERE token = 'tok_SECRET'")).all()
            conn.execute(text(f"SELECT [it's] FROM t WHERE token = 'tok_SECRET_{n}'")).all()
    report = watch.report
    assert report.duplicates
    assert report.n_plus_one
    saved = report.save(tmp_path / "report.json").read_text(encoding="utf-8")
    assert "SECRET" not in saved
    data = json.loads(saved)
    redacted = "SELECT [it's] FROM t WHERE token = ?"
    assert {s["sql"] for s in data["statements"]} == {redacted}
    assert data["duplicates"][0]["sql"] == redacted
    assert data["n_plus_one"][0]["example_sql"] == redacted


def test_redaction_of_records_from_engines_not_instrumented_here() -> None:
    """A report loaded from elsewhere: a URL-named engine says its dialect; for any
    other name, and for a duplicate or N+1 of no known statement, the text is
    lexed as every dialect would, so a value is gone whichever it was."""
    mysql = "SELECT id FROM users WHERE token = \"tok_SECRET\" AND note = 'it\\'s SECRET'"
    postgres = "SELECT \"user\".id FROM \"user\" WHERE path = 'C:\\' AND token = 'SECRET'"
    info = sqlwatch.analyze(mysql, "mysql")
    base = records_module.Statement(
        sql=mysql,
        operation=info.operation,
        tables=info.tables,
        fingerprint=info.fingerprint,
        normalized=info.normalized,
        duration_ms=1.0,
        rowcount=None,
        executemany=False,
        started_at="2025-01-01T00:00:00Z",
        engine="mysql+pymysql://app@db/app",
        call_site=None,
        relationship=None,
        error=None,
    )
    statements = (
        base,
        dataclasses.replace(base, sql=postgres, engine="postgresql+psycopg://app:***@db/app"),
        dataclasses.replace(base, sql=postgres, engine="warehouse"),
    )
    finding = records_module.NPlusOne(
        fingerprint=info.fingerprint,
        normalized=info.normalized,
        example_sql=mysql,
        count=3,
        total_ms=3.0,
        call_site=None,
        relationship=None,
        tables=info.tables,
        suggestion="",
    )
    report = Report(
        statements=statements,
        slow_queries=statements[:1],
        n_plus_one=(finding,),
        duplicates=(
            records_module.Duplicate(sql=mysql, count=2, call_sites=()),
            records_module.Duplicate(sql=mysql.replace("id", "name"), count=2, call_sites=()),
        ),
    )
    data = report.to_dict()
    assert "SECRET" not in json.dumps(data)
    mysql_redacted = "SELECT id FROM users WHERE token = ? AND note = ?"
    assert [s["sql"] for s in data["statements"]] == [
        mysql_redacted,
        'SELECT "user".id FROM "user" WHERE path = ? AND token = ?',
        "SELECT ?.id FROM ? WHERE path = ?'",  # "warehouse": any dialect
    ]
    assert data["slow_queries"][0]["sql"] == mysql_redacted
    assert data["n_plus_one"][0]["example_sql"] == mysql_redacted
    assert data["duplicates"][0]["sql"] == mysql_redacted
    assert data["duplicates"][1]["sql"] == "SELECT name FROM users WHERE token = ? AND note = ?'"
    # a report that dropped statements cannot vouch for the dialect of a finding
    dropped = dataclasses.replace(report, dropped_statements=1).to_dict()
    assert dropped["n_plus_one"][0]["example_sql"] == mysql_redacted + "'"
