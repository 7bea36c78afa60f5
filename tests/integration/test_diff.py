"""``sqlwatch diff BASE NEW``: real reports saved from real runs on SQLite, compared
through the command line as CI would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch._cli import main
from sqlwatch._cli.diff import n_plus_one_key
from sqlwatch.records import NPlusOne
from tests.models import Base, User, seed

Plan = dict[str, tuple[int, int, int]]
"""scope name -> (runs, statements per run, N+1 variant: 0 none, 1 or 2 = same loop
on another line)"""


def list_emails(engine: object, variant: int) -> None:
    assert variant in (1, 2)
    with Session(engine) as session:  # type: ignore[call-overload]
        emails = []
        for user in session.scalars(select(User)):
            if variant == 1:
                emails += [address.email for address in user.addresses]
            else:  # the same N+1 on another line: after an unrelated edit
                emails += [address.email for address in user.addresses]


def save_report(tmp_path: Path, name: str, plan: Plan) -> Path:
    """A process report with one scope per entry of ``plan``, as the middleware or
    named watches make them, saved the way ``sqlwatch.report().save()`` does."""
    sqlwatch.reset()
    engine = create_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    sqlwatch.instrument(engine, exporters=())
    for scope, (runs, statements, variant) in plan.items():
        for _ in range(runs):
            with sqlwatch.watch(scope), engine.connect() as connection:
                for _ in range(statements):
                    connection.execute(text("SELECT count(*) FROM users")).scalar()
                if variant:
                    list_emails(engine, variant)
    path = tmp_path / f"{name}.json"
    sqlwatch.report().save(path)
    engine.dispose()
    sqlwatch.reset()
    return path


def row(out: str, scope: str) -> list[str]:
    """The cells after the scope name of the text table's row for ``scope``."""
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [scope]]
    return line.split()[1:]


def diff(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main(["diff", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


BASE: Plan = {
    "test_users": (1, 2, 0),
    "test_orders": (1, 5, 0),
    "test_emails": (1, 0, 1),
    "test_removed": (1, 1, 0),
}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return save_report(tmp_path, "base", BASE)


def test_identical_reports_have_no_regression(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = save_report(tmp_path, "same", BASE)
    status, out, err = diff(capsys, base, same, "--fail-on-regression")
    assert (status, err) == (0, "")
    assert "4 scopes: 4 unchanged." in out
    assert "(4 unchanged scopes not shown: --all)" in out
    assert out.rstrip().endswith("No regression.")
    status, out, _ = diff(capsys, base, same, "--all")
    assert row(out, "test_orders")[:4] == ["unchanged", "5", "->", "5"]


def test_more_queries_is_a_regression_that_fails_only_when_asked(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_users": (1, 4, 0)})
    status, out, _ = diff(capsys, base, new)
    assert status == 0
    lines = out.splitlines()
    (row,) = [line for line in lines if line.startswith("test_users")]
    assert row.split()[:6] == ["test_users", "regressed", "2", "->", "4", "+2"]
    assert "  test_users: queries +2" in lines
    assert lines[-1] == "1 scope regressed (max increase 0)."

    status, out, _ = diff(capsys, base, new, "--fail-on-regression")
    assert status == 1
    assert out.splitlines()[-1] == "1 scope regressed (max increase 0): failing."


def test_max_increase_allows_some_growth(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_users": (1, 4, 0)})
    status, out, _ = diff(capsys, base, new, "--fail-on-regression", "--max-increase", "2")
    assert status == 0
    assert row(out, "test_users")[:5] == ["more", "queries", "2", "->", "4"]
    status, _, _ = diff(capsys, base, new, "--fail-on-regression", "--max-increase=1")
    assert status == 1


def test_a_new_n_plus_one_is_a_regression_whatever_the_allowance(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_orders": (1, 5, 1)})
    status, out, _ = diff(capsys, base, new, "--fail-on-regression", "--max-increase", "100")
    assert status == 1
    assert "test_orders: new N+1: User.addresses at tests/integration/test_diff.py:" in out
    assert "in list_emails" in out
    assert "      fix: Add .options(selectinload(User.addresses))" in out


def test_the_same_n_plus_one_on_another_line_is_not_new(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moved = save_report(tmp_path, "moved", {**BASE, "test_emails": (1, 0, 2)})
    status, out, _ = diff(capsys, base, moved, "--fail-on-regression")
    assert status == 0, out
    assert "No regression." in out


def test_fixed_n_plus_one_and_fewer_queries(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(
        tmp_path, "new", {**BASE, "test_emails": (1, 0, 0), "test_orders": (1, 3, 0)}
    )
    status, out, _ = diff(capsys, base, new, "--fail-on-regression", "--format", "json")
    assert status == 0
    data = json.loads(out)
    by_name = {scope["name"]: scope for scope in data["scopes"]}
    assert by_name["test_emails"]["status"] == "fewer queries"
    assert by_name["test_emails"]["after"]["n_plus_one"] == 0
    assert [f["relationship"] for f in by_name["test_emails"]["fixed_n_plus_one"]] == [
        "User.addresses"
    ]
    assert by_name["test_orders"]["change"] == -2


def test_scopes_on_one_side_only_are_listed(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = {name: spec for name, spec in BASE.items() if name != "test_removed"}
    new = save_report(tmp_path, "new", {**plan, "test_added": (1, 3, 0)})
    status, out, _ = diff(capsys, base, new, "--fail-on-regression")
    assert status == 0
    rows = {
        line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("test_")
    }
    assert rows["test_added"][:4] == ["added", "-", "->", "3"]
    assert rows["test_removed"][:4] == ["removed", "1", "->", "-"]


def test_an_added_scope_with_an_n_plus_one_is_a_regression(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_new_page": (1, 0, 1)})
    status, out, _ = diff(capsys, base, new, "--fail-on-regression")
    assert status == 1
    assert "test_new_page: new N+1: User.addresses" in out


def test_endpoints_compare_per_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = save_report(tmp_path, "before", {"GET /users/{id}": (2, 3, 0)})
    after = save_report(tmp_path, "after", {"GET /users/{id}": (7, 3, 0)})
    status, out, _ = diff(capsys, before, after, "--fail-on-regression", "--format", "json")
    assert status == 0
    (scope,) = json.loads(out)["scopes"]
    assert scope["status"] == "unchanged"
    assert (scope["before"]["runs"], scope["after"]["runs"]) == (2, 7)
    assert scope["before"]["queries"] == scope["after"]["queries"] == 3.0
    worse = save_report(tmp_path, "worse", {"GET /users/{id}": (4, 4, 0)})
    status, out, _ = diff(capsys, before, worse, "--fail-on-regression")
    assert status == 1
    assert "GET /users/{id}: queries +1" in out


def save_requests(tmp_path: Path, name: str, per_request: list[int]) -> Path:
    """A report of one endpoint whose requests ran ``per_request`` statements each."""
    sqlwatch.reset()
    engine = create_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    sqlwatch.instrument(engine, exporters=())
    for statements in per_request:
        with sqlwatch.watch("GET /users"), engine.connect() as connection:
            for _ in range(statements):
                connection.execute(text("SELECT 1"))
    path = sqlwatch.report().save(tmp_path / f"{name}.json")
    engine.dispose()
    sqlwatch.reset()
    return path


def test_growth_of_exactly_the_allowance_per_request_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4/3 -> 7/3 queries per request is +1 exactly, though 7/3 - 4/3 is not 1 in floats."""
    before = save_requests(tmp_path, "before", [1, 1, 2])
    after = save_requests(tmp_path, "after", [2, 2, 3])
    status, out, _ = diff(capsys, before, after, "--fail-on-regression", "--max-increase", "1")
    assert status == 0, out
    assert row(out, "GET")[:7] == ["/users", "more", "queries", "1.3", "->", "2.3", "+1"]
    status, out, _ = diff(capsys, before, after, "--format", "json")
    (scope,) = json.loads(out)["scopes"]
    assert scope["change"] == 1.0
    status, out, _ = diff(capsys, before, after, "--fail-on-regression")
    assert status == 1
    assert "GET /users: queries +1" in out


def test_markdown_for_a_pull_request_comment(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_users": (1, 3, 0), "test_orders": (1, 5, 1)})
    status, out, _ = diff(capsys, base, new, "--format", "markdown")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "### sqlwatch: SQL per test and endpoint"
    assert "| scope | status | queries | change | N+1 | query ms |" in lines
    assert "|---|---|---|---|---|---|" in lines
    assert any(
        line.startswith("| `test_users` | regressed | 2 -> 3 | +1 | 0 -> 0 |") for line in lines
    )
    assert "#### Regressions" in lines
    assert "- `test_users`: queries +1" in lines
    assert any(
        line.startswith("  - fix: Add .options(selectinload(User.addresses))") for line in lines
    )


def test_markdown_shows_scope_names_as_they_are(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name with a backtick or a pipe stays one code span in one cell."""
    name = "test_sql[`users` | __all__]"
    before = save_report(tmp_path, "before", {name: (1, 1, 0)})
    after = save_report(tmp_path, "after", {name: (1, 2, 0)})
    _, out, _ = diff(capsys, before, after, "--format", "markdown")
    lines = out.splitlines()
    assert any(
        line.startswith(r"| ``test_sql[`users` \| __all__]`` | regressed | 1 -> 2 | +1 |")
        for line in lines
    ), out
    assert "- ``test_sql[`users` | __all__]``: queries +1" in lines


def test_json_output(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_users": (1, 3, 0)})
    status, out, _ = diff(capsys, base, new, "--format=json", "--max-increase=0")
    assert status == 0
    data = json.loads(out)
    assert (data["base"], data["new"], data["max_increase"], data["regressions"]) == (
        str(base),
        str(new),
        0,
        1,
    )
    assert data["totals"]["queries"]["after"] - data["totals"]["queries"]["before"] == 1
    first = data["scopes"][0]
    assert (first["name"], first["status"], first["reasons"]) == (
        "test_users",
        "regressed",
        ["queries +1"],
    )
    assert first["before"] == {
        "runs": 1,
        "queries": 2.0,
        "query_ms": first["before"]["query_ms"],
        "n_plus_one": 0,
    }


def test_reports_without_scopes_compare_as_one_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    sqlwatch.instrument(engine, exporters=())
    paths = []
    for n in (2, 5):
        with sqlwatch.watch("checkout") as watch, engine.connect() as connection:
            for _ in range(n):
                connection.execute(text("SELECT 1"))
        paths.append(watch.report.save(tmp_path / f"checkout{n}.json"))
    engine.dispose()
    status, out, _ = diff(capsys, *paths, "--fail-on-regression")
    assert status == 1
    assert "checkout: queries +3" in out


# -- bad input ---------------------------------------------------------------------------------


BAD_SCOPE = json.dumps(
    {
        "schema_version": 1,
        "scopes": [
            {
                "name": "t",
                "runs": "once",
                "query_count": 1,
                "total_query_ms": 0.5,
                "duration_ms": 1.0,
                "queries_per_run": {},
            }
        ],
    }
)


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "report file not found: "),
        ("{", [], "is not valid JSON"),
        ("[]", [], "not a sqlwatch report"),
        ('{"schema_version": 99}', [], "schema_version is 99"),
        ('{"schema_version": 1, "query_count": "many"}', [], "malformed sqlwatch report"),
        (BAD_SCOPE, [], "scopes[0].runs must be an integer, got the string 'once'"),
        ("VALID", ["--max-increase", "-1"], "--max-increase: expected an integer >= 0, got -1"),
        ("VALID", ["--max-increase", "two"], "--max-increase: expected an integer >= 0"),
        ("VALID", ["--format", "html"], "argument --format: invalid choice: 'html'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    args: list[str],
    message: str,
) -> None:
    other = tmp_path / "other.json"
    if content == "VALID":
        other = base
    elif content is not None:
        other.write_text(content)
    status, out, err = diff(capsys, base, other, *args)
    assert status == 2
    assert out == ""
    assert err.startswith("sqlwatch: error: ")
    assert message in err
    assert err.count("\n") == 1


def _finding(**changes: object) -> dict[str, object]:
    finding: dict[str, object] = {
        "fingerprint": "a",
        "normalized": "SELECT x",
        "example_sql": "SELECT x",
        "count": 3,
        "total_ms": 1.0,
        "call_site": "app.py:3 in f",
        "relationship": None,
        "tables": [],
        "suggestion": "s",
    }
    return {**finding, **changes}


def _scope(**changes: object) -> dict[str, object]:
    scope: dict[str, object] = {
        "name": "t",
        "runs": 1,
        "query_count": 1,
        "total_query_ms": 1.0,
        "duration_ms": 1.0,
        "queries_per_run": {},
    }
    return {**scope, **changes}


def _report(**fields: object) -> str:
    return json.dumps({"schema_version": 1, "query_count": 1, "total_query_ms": 1.0, **fields})


WRONG_TYPES = [
    (_report(name=None), "name must be a string, got null"),
    (_report(name=["a"]), "name must be a string, got a list"),
    (_report(n_plus_one=[_finding(call_site=5)]), "n_plus_one[0].call_site must be a string or"),
    (_report(n_plus_one=[_finding(fingerprint=["a"])]), "n_plus_one[0].fingerprint must be a"),
    (_report(n_plus_one=[_finding(normalized=1)]), "n_plus_one[0].normalized must be a string"),
    (_report(n_plus_one=[_finding(suggestion=None)]), "n_plus_one[0].suggestion must be a"),
    (_report(n_plus_one=[_finding(relationship=2)]), "n_plus_one[0].relationship must be a"),
    (
        _report(scopes=[_scope(n_plus_one=[_finding(call_site=5)])]),
        "scopes[0].n_plus_one[0].call_site must be a string or null, got 5",
    ),
    (_report(scopes=[_scope(name=None)]), "scopes[0].name must be a string, got null"),
    (_report(scopes=[_scope(query_count=10**400)]), "scopes[0].query_count must be an integer"),
    (_report(scopes=[_scope(total_query_ms=None)]), "scopes[0].total_query_ms must be a finite"),
    (_report(total_query_ms="1"), "total_query_ms must be a finite number"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize("side", ["base", "new"])
@pytest.mark.parametrize(("content", "message"), WRONG_TYPES, ids=[m for _, m in WRONG_TYPES])
def test_wrong_types_are_bad_input_not_a_regression(
    base: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    message: str,
    side: str,
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    pair = (bad, base) if side == "base" else (base, bad)
    for output in ("text", "json"):
        status, out, err = diff(capsys, *pair, "--fail-on-regression", "--format", output)
        assert status == 2  # never 1, the exit status of a regression
        assert out == ""
        assert err.startswith(f"sqlwatch: error: {bad}")
        assert message in err
        assert err.count("\n") == 1
        assert "Traceback" not in err


def test_the_installed_command_gates_ci(base: Path, tmp_path: Path) -> None:
    new = save_report(tmp_path, "new", {**BASE, "test_users": (1, 9, 0)})
    command = [sys.executable, "-m", "sqlwatch", "diff", str(base), str(new)]
    result = subprocess.run(
        [*command, "--fail-on-regression"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1, result.stderr
    assert "test_users: queries +7" in result.stdout
    missing = subprocess.run(
        [*command[:-1], str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("sqlwatch: error: report file not found")
    assert "Traceback" not in missing.stderr


def _finding(call_site: str | None, relationship: str | None = "User.addresses") -> NPlusOne:
    return NPlusOne(
        fingerprint="f1",
        normalized="SELECT ...",
        example_sql="SELECT ...",
        count=3,
        total_ms=1.0,
        call_site=call_site,
        relationship=relationship,
        tables=("addresses",),
        suggestion="",
    )


def test_n_plus_one_identity_ignores_the_line_number() -> None:
    assert n_plus_one_key(_finding("app/views.py:10 in index")) == n_plus_one_key(
        _finding("app/views.py:42 in index")
    )
    assert n_plus_one_key(_finding("app/views.py:10 in index")) != n_plus_one_key(
        _finding("app/views.py:10 in detail")
    )
    assert n_plus_one_key(_finding(None, None)) == ("f1", "")


def test_n_plus_one_identity_of_a_path_with_in_or_colons() -> None:
    def key(call_site: str) -> tuple[str, str]:
        return n_plus_one_key(_finding(call_site))

    folder = "/home/me/work in progress/app"
    assert key(f"{folder}/views.py:10 in index") == key(f"{folder}/views.py:42 in index")
    assert key(f"{folder}/views.py:10 in index") == (
        "User.addresses",
        f"{folder}/views.py in index",
    )
    assert key(f"{folder}/views.py:10 in index") != key(f"{folder}/views.py:10 in detail")
    assert key(f"{folder}/views.py:10 in index") != key("/elsewhere/views.py:10 in index")
    assert key(r"C:\app in dev\views.py:7 in index") == key(r"C:\app in dev\views.py:9 in index")
    assert key("<string>:3 in <module>") == ("User.addresses", "<string> in <module>")
    assert key("no line number here") == ("User.addresses", "no line number here")
