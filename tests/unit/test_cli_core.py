"""``sqlwatch analyze`` and ``sqlwatch report``: output people read, and bad input.

Bad input must be one line on stderr and exit status 2, never a traceback: the
CLI runs in CI gates, where a traceback reads as a crash of the tool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import sqlwatch
from sqlwatch import Report
from sqlwatch._cli import main

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden_report_v1.json"
SQL = "SELECT o.id FROM orders o JOIN users u ON u.id = o.user_id WHERE u.id IN (1, 2, 3)"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, out: str, err: str, *words: str) -> None:
    assert status == 2
    assert out == ""
    assert err.startswith("sqlwatch: error: ")
    assert err.count("\n") == 1
    assert err.endswith("\n")
    assert "Traceback" not in err
    for word in words:
        assert word in err


# -- analyze --------------------------------------------------------------------------------


def test_analyze_prints_what_sqlwatch_makes_of_a_statement(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "analyze", SQL, "--dialect", "postgresql")
    info = sqlwatch.analyze(SQL, "postgresql")

    assert (status, err) == (0, "")
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert rows["operation"] == "SELECT"
    assert rows["tables"] == ", ".join(info.tables)
    assert set(info.tables) == {"orders", "users"}
    assert rows["fingerprint"] == info.fingerprint
    assert rows["normalized"] == info.normalized
    assert "1, 2, 3" not in rows["normalized"]


def test_analyze_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "analyze", SQL, "--json")
    data = json.loads(out)
    info = sqlwatch.analyze(SQL)
    assert status == 0
    assert data["operation"] == "SELECT"
    assert data["tables"] == list(info.tables)
    assert data["fingerprint"] == info.fingerprint
    assert data["normalized"] == info.normalized
    assert data["parse_ok"] is True


def test_analyze_unparseable_sql_is_not_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "analyze", "SELEC * FORM (((", "--json")
    assert (status, err) == (0, "")
    assert json.loads(out)["parse_ok"] is False


def test_analyze_unknown_dialect(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "analyze", SQL, "--dialect", "nosuchdb"), "nosuchdb")


def test_analyze_without_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "analyze"), "sql")


# -- report ---------------------------------------------------------------------------------


def test_report_text_is_a_readable_table(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "report", str(GOLDEN))
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("sqlwatch report: 9 queries in 60.7 ms")
    assert "scope 'GET /users'" in lines[0]

    def section(title: str) -> list[str]:
        start = lines.index(title)
        end = lines.index("", start) if "" in lines[start:] else len(lines)
        return lines[start + 1 : end]

    top = section("Top statements by total time")
    assert top[0].split() == [
        "count",
        "total",
        "ms",
        "mean",
        "ms",
        "p95",
        "ms",
        "max",
        "ms",
        "statement",
    ]
    assert set(top[1]) <= {"-", " "}
    assert top[2].split()[0] == "1"
    assert top[2].endswith("SELECT sleep_ms(?)")  # the most total time first
    assert len(top) == 2 + 6

    slow = section("Slow queries")
    assert "app.py:30 in report_page" in slow[2]
    assert "SELECT sleep_ms(?)" in slow[2]

    operations = section("Statements by operation")
    assert [row.split() for row in operations[2:]] == [["SELECT", "8"], ["INSERT", "1"]]
    tables = section("Statements by table")
    assert [row.split() for row in tables[2:]] == [
        ["addresses", "5"],
        ["users", "1"],
        ["tags", "1"],
        ["missing_table", "1"],
    ]
    assert "Errors" in lines
    # columns line up: the statements all start under the "statement" header
    column = top[0].index("statement")
    for row in top[2:]:
        assert row[column - 2 : column] == "  "
        assert row[column:].split()[0] in ("SELECT", "INSERT")


def test_report_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", str(GOLDEN), "--format", "markdown")
    lines = out.splitlines()
    assert status == 0
    assert lines[0].startswith("### sqlwatch: 9 queries")
    assert "#### Top statements by total time" in lines
    header = lines.index("#### Top statements by total time") + 2
    assert lines[header] == "| count | total ms | mean ms | p95 ms | max ms | statement |"
    assert lines[header + 1] == "|---|---|---|---|---|---|"
    assert lines[header + 2] == "| 1 | 60.2 | 60.2 | 60.1 | 60.2 | SELECT sleep_ms(?) |"
    assert "#### Slow queries" in lines
    assert "| SELECT | 8 |" in lines


def test_report_json_is_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", str(GOLDEN), "--format", "json")
    assert status == 0
    assert Report.from_dict(json.loads(out)) == Report.load(GOLDEN)


def test_report_top_limits_the_fingerprints(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "report", str(GOLDEN), "--top", "2")
    lines = out.splitlines()
    start = lines.index("Top statements by total time")
    assert lines[start + 5] == ""  # title, header, underline, two rows


def test_report_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert_one_line_error(*run(capsys, "report", str(missing)), "not found", str(missing))


@pytest.mark.parametrize(
    "content", ["{oops", "[]", '{"schema_version": 99}', '{"schema_version": 1, "tables": 3}']
)
def test_report_malformed_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(*run(capsys, "report", str(path)), str(path))


WRONG_TYPES = [
    ('{"schema_version": 1, "total_query_ms": null}', "total_query_ms must be a finite number"),
    ('{"schema_version": 1, "duration_ms": "12"}', "duration_ms must be a finite number"),
    ('{"schema_version": 1, "name": 3}', "name must be a string, got 3"),
    (
        '{"schema_version": 1, "fingerprints": [{"fingerprint": "a", "normalized": null, '
        '"operation": "SELECT", "tables": [], "count": 1, "total_ms": 1, "mean_ms": 1, '
        '"p50_ms": 1, "p95_ms": 1, "p99_ms": 1, "max_ms": 1, "call_sites": "x.py:1 in f"}]}',
        "fingerprints[0].normalized must be a string, got null",
    ),
    (
        '{"schema_version": 1, "scopes": [{"name": "t", "runs": 1, "query_count": "3", '
        '"total_query_ms": 1, "duration_ms": 1, "queries_per_run": {}}]}',
        "scopes[0].query_count must be an integer, got the string '3'",
    ),
    (
        '{"schema_version": 1, "duplicates": [{"sql": 1, "count": 2, "call_sites": []}]}',
        "duplicates[0].sql must be a string, got 1",
    ),
    (
        '{"schema_version": 1, "slow_queries": [{"sql": "x", "operation": "SELECT", '
        '"tables": [], "fingerprint": "a", "normalized": "x", "duration_ms": null, '
        '"rowcount": null, "executemany": false, "started_at": "", "engine": "e", '
        '"call_site": null, "relationship": null, "error": null}]}',
        "slow_queries[0].duration_ms must be a finite number, got null",
    ),
    (
        '{"schema_version": 1, "sessions": {"unclosed": 1, "unclosed_call_sites": [3]}}',
        "sessions.unclosed_call_sites[0] must be a string, got 3",
    ),
    ('{"schema_version": 1, "total_query_ms": Infinity}', "total_query_ms must be a finite"),
]


@pytest.mark.parametrize("output", ["text", "markdown", "json"])
@pytest.mark.parametrize(("content", "message"), WRONG_TYPES, ids=[m for _, m in WRONG_TYPES])
def test_report_of_wrong_types_names_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str, output: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    status, out, err = run(capsys, "report", str(path), "--format", output)
    assert_one_line_error(status, out, err, str(path), "malformed sqlwatch report", message)


def test_report_of_json_nested_too_deeply(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    assert_one_line_error(*run(capsys, "report", str(path)), str(path), "nested too deeply")


@pytest.mark.parametrize("top", ["-1", "-5", "ten", "1.5"])
def test_report_top_must_be_a_non_negative_integer(
    capsys: pytest.CaptureFixture[str], top: str
) -> None:
    status, out, err = run(capsys, "report", str(GOLDEN), "--top", top)
    assert_one_line_error(status, out, err, "argument --top: expected an integer >= 0")


def test_report_top_zero_lists_no_row(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", str(GOLDEN), "--top", "0")
    assert status == 0
    assert "Top statements by total time" not in out.splitlines()


def test_report_says_why_statements_are_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    golden = Report.load(GOLDEN)
    over_the_cap = replace(golden, dropped_statements=4)
    none_kept = replace(golden, statements=(), dropped_statements=13)  # the pytest plugin's
    _, out, _ = run(capsys, "report", str(over_the_cap.save(tmp_path / "cap.json")))
    assert out.splitlines()[1] == "(4 statements beyond max_statements: aggregated only)"
    _, out, _ = run(capsys, "report", str(none_kept.save(tmp_path / "none.json")))
    assert "max_statements" not in out
    assert out.splitlines()[1] == (
        "(statements are not kept one by one in this report: all 13 are aggregated)"
    )


def test_report_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert_one_line_error(*run(capsys, "report", str(tmp_path)))


def test_report_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys, "report", str(GOLDEN), "--format", "yaml"), "yaml")


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*run(capsys))


def test_python_dash_m_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sqlwatch", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"sqlwatch {sqlwatch.__version__}"
    assert done.stderr == ""


def test_a_reader_that_leaves_early_is_not_an_error() -> None:
    """``sqlwatch report r.json | head``: the pipe closes before the output ends.
    No message, no traceback; the status a shell gives a command ended by SIGPIPE."""
    command = [sys.executable, "-m", "sqlwatch", "report", "--format", "json", str(GOLDEN)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()  # the reader is gone before the first byte
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 141
    assert err == b""


def test_names_the_output_encoding_cannot_spell_are_escaped() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sqlwatch", "analyze", 'SELECT * FROM "été"'],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert b"tables       \\xe9t\\xe9\n" in done.stdout
