"""The analyzer's caches: what is parsed how often, and that memory stays bounded.

Counted, never timed: the parse counter says whether the shape cache works;
``benchmarks/analysis.py`` says how fast it is.
"""

from __future__ import annotations

import threading

from sqlwatch._analysis import StatementAnalyzer, _analyzer, analyzer_for, clear_caches


def test_a_repeated_statement_is_answered_from_the_cache() -> None:
    analyzer = StatementAnalyzer("sqlite")
    sql = "SELECT users.id FROM users WHERE users.id = ?"
    first = analyzer(sql)
    assert analyzer(sql) is first
    assert analyzer(str(sql)) is first
    assert analyzer.cache_info().exact == 1


def test_unicode_look_alikes_of_keywords_do_not_share_a_cache_entry() -> None:
    """``"\u017felect".upper()`` (a long s) is ``"SELECT"``; were it upper-cased,
    "\u017felect 1" would meet "select 1" in the normalized cache and hand it
    its operation."""
    analyzer = StatementAnalyzer(None)
    for lookalike, plain in [
        ("\u017felect 1", "select 1"),
        ("\u0131nsert into t values (1)", "insert into t values (2)"),
        ("select * from t where a \u0131n (1, 2)", "select * from t where a in (1, 2)"),
        ("\u017favepoint a", "savepoint a"),
    ]:
        odd = analyzer(lookalike)
        assert not odd.normalized.isascii()  # the look-alike kept as written
        assert analyzer(plain) == StatementAnalyzer(None)(plain)
        assert odd.fingerprint != analyzer(plain).fingerprint
    assert analyzer("\u017felect 1").operation == "OTHER"
    assert analyzer("select 1").operation == "SELECT"
    # ... nor is a look-alike's list collapsed, nor its "savepoint" name dropped
    assert analyzer("select a \u0131n (1, 2)") != analyzer("select a \u0131n (1)")
    assert analyzer("\u017favepoint a") != analyzer("\u017favepoint b")


def test_ten_thousand_literal_variations_are_parsed_once() -> None:
    analyzer = StatementAnalyzer("postgresql")
    fingerprints = {
        analyzer(
            f"SELECT * FROM orders WHERE id = {i} AND note = 'note {i}' AND total > {i / 7!r}"
        ).fingerprint
        for i in range(10_000)
    }
    assert len(fingerprints) == 1
    assert analyzer.parse_count == 1
    assert analyzer.cache_info().shapes == 1


def test_in_lists_of_every_length_and_cast_are_parsed_once() -> None:
    """Lengths 1..300, literal and parameter items, PostgreSQL casts on parameters."""
    analyzer = StatementAnalyzer("postgresql")
    statements = []
    for n in range(1, 301):
        statements.append(f"SELECT * FROM t WHERE id IN ({', '.join(str(i) for i in range(n))})")
        casts = ", ".join(f"%(id_1_{i})s::INTEGER" for i in range(n))
        statements.append(f"SELECT * FROM t WHERE id IN ({casts})")
        multi = ", ".join(f"${i}::TIMESTAMP WITHOUT TIME ZONE" for i in range(n))
        statements.append(f"SELECT * FROM t WHERE ts IN ({multi})")
    infos = [analyzer(sql) for sql in statements]
    assert len({info.fingerprint for info in infos}) == 3
    assert analyzer.parse_count == 3


def test_savepoints_are_never_parsed() -> None:
    analyzer = StatementAnalyzer("sqlite")
    for n in range(100):
        analyzer(f"SAVEPOINT sa_savepoint_{n}")
        analyzer(f"RELEASE SAVEPOINT sa_savepoint_{n}")
    assert analyzer.parse_count == 0
    assert analyzer.cache_info().shapes == 2


def small_analyzer(dialect: str | None = "sqlite") -> StatementAnalyzer:
    return StatementAnalyzer(dialect, max_statements=8, max_shapes=4)


def test_caches_are_bounded() -> None:
    analyzer = small_analyzer()
    for i in range(50):
        analyzer(f"SELECT * FROM t{i} WHERE id = {i}")
    exact, shapes, normalized, parses = analyzer.cache_info()
    assert exact == 8
    assert shapes == 4
    assert normalized == 4
    assert parses == 50


def test_the_oldest_entry_is_evicted_first() -> None:
    analyzer = small_analyzer()
    literal = iter(range(1000))  # a new literal each time: never an exact-text hit
    for i in range(5):
        analyzer(f"SELECT * FROM t{i} WHERE id = {next(literal)}")
    assert analyzer.parse_count == 5
    analyzer(f"SELECT * FROM t4 WHERE id = {next(literal)}")  # its shape is still cached
    assert analyzer.parse_count == 5
    analyzer(f"SELECT * FROM t0 WHERE id = {next(literal)}")  # evicted: parsed again
    assert analyzer.parse_count == 6


def test_long_statements_are_not_kept_verbatim() -> None:
    analyzer = StatementAnalyzer("sqlite")
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(["?"] * 5000) + ")"
    assert len(sql) > _analyzer.MAX_EXACT_KEY_CHARS
    analyzer(sql)
    analyzer(sql)
    assert analyzer.cache_info().exact == 0
    assert analyzer.parse_count == 1


def test_long_shapes_are_keyed_by_digest() -> None:
    analyzer = StatementAnalyzer(None)
    columns = ", ".join(f"column_number_{i}" for i in range(1000))
    sql = f"SELECT {columns} FROM t"
    info = analyzer(sql)
    assert len(sql) > _analyzer.MAX_SHAPE_KEY_CHARS
    assert all(isinstance(key, bytes) for key in analyzer._shapes.entries)
    assert analyzer(sql + " ") is info  # the same shape, found by digest


def test_statements_too_long_to_parse_still_get_a_fingerprint() -> None:
    analyzer = StatementAnalyzer(None)
    sql = "SELECT " + " + ".join(f"c{i}" for i in range(10_000)) + " FROM t"
    info = analyzer(sql)
    assert analyzer.parse_count == 0
    assert info.parse_ok is False
    assert info.operation == "SELECT"
    assert len(info.normalized) <= _analyzer.MAX_NORMALIZED_CHARS + 20
    assert info.normalized.endswith("/* truncated */")


def test_truncated_texts_keep_distinct_fingerprints() -> None:
    head = "SELECT " + ", ".join(f"c{i}" for i in range(5000))
    first, second = (
        StatementAnalyzer(None)(head + ", a FROM t"),
        StatementAnalyzer(None)(head + ", b FROM t"),
    )
    assert first.normalized == second.normalized  # cut before they differ
    assert first.fingerprint != second.fingerprint


def test_pathological_statements_collapse_before_parsing() -> None:
    analyzer = StatementAnalyzer("postgresql")
    in_list = analyzer("SELECT * FROM t WHERE id IN (" + ", ".join(map(str, range(10_000))) + ")")
    rows = ", ".join(f"({i}, 'name {i}', NULL)" for i in range(40_000))
    insert = analyzer(f"INSERT INTO t (a, b, c) VALUES {rows}")
    assert len(rows) > 1_000_000
    assert in_list.normalized == "SELECT * FROM t WHERE id IN (?)"
    assert insert.normalized == "INSERT INTO t(a, b, c) VALUES (?, ?, NULL)"
    assert insert.parse_ok
    assert analyzer.parse_count == 2


def test_clear_caches_empties_the_shared_analyzers() -> None:
    analyzer = analyzer_for("sqlite")
    analyzer("SELECT * FROM cleared_table")
    assert analyzer.cache_info().exact >= 1
    clear_caches()
    assert analyzer.cache_info() == (0, 0, 0, 0)
    assert analyzer_for("sqlite") is analyzer


def test_threads_share_an_analyzer_safely() -> None:
    analyzer = small_analyzer("postgresql")
    expected = {n: analyzer(f"SELECT * FROM t{n % 6} WHERE id = 0").fingerprint for n in range(6)}
    errors: list[BaseException] = []
    mismatches: list[str] = []

    def work(seed: int) -> None:
        try:
            for i in range(1000):
                n = (seed + i) % 6
                info = analyzer(f"SELECT * FROM t{n} WHERE id = {seed * 10_000 + i}")
                if info.fingerprint != expected[n]:
                    mismatches.append(info.normalized)
        except BaseException as error:  # pragma: no cover - the assertion reports it
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert mismatches == []
    assert analyzer.cache_info().exact <= 8
    assert analyzer.cache_info().shapes <= 4
