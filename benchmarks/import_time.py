"""What the pytest plugin costs a project that installs sqlwatch and does not use it.

    python benchmarks/import_time.py             # about a minute
    python benchmarks/import_time.py --quick     # smoke run

pytest imports ``sqlwatch.integrations.pytest_plugin`` (the ``pytest11`` entry
point) in every run of every project that has sqlwatch installed. Targets
(issue 6): importing it loads no sqlglot, no OpenTelemetry, no psutil (and no
SQLAlchemy); installed but unused, it adds at most 10 ms to pytest's start-up.

Three measurements, each in fresh interpreters:

1. ``python -X importtime -c "import pytest; import sqlwatch.integrations.pytest_plugin"``:
   the plugin's own import time (pytest itself is loaded first, as in a pytest run),
   and the modules it brings in;
2. ``import sqlwatch`` in full (what a test that uses the plugin pays, once), for scale;
3. pytest's start-up on an empty test file with the plugin (auto-loaded) and without
   it (``-p no:sqlwatch``), alternated, the minimum of each over the rounds; the
   difference is what the plugin adds.

Byte-code is cached in a temporary ``PYTHONPYCACHEPREFIX`` (warmed before timing),
as in a normal install: ``PYTHONDONTWRITEBYTECODE`` would time the compiler instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _harness import print_header

PLUGIN = "sqlwatch.integrations.pytest_plugin"
HEAVY = ("sqlglot", "opentelemetry", "psutil", "sqlalchemy")
IMPORT_TARGET_MS = 10.0
STARTUP_TARGET_MS = 10.0


def run(
    args: list[str], env: dict[str, str], cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)


PROBE = """
import json, sys, time
import pytest
before = set(sys.modules)
start = time.perf_counter_ns()
{statement}
elapsed = time.perf_counter_ns() - start
print(json.dumps([elapsed / 1e6, sorted(set(sys.modules) - before)]))
"""


def probe(statement: str, env: dict[str, str]) -> tuple[float, list[str]]:
    """Milliseconds to run ``statement`` after ``import pytest``, and the modules it loaded."""
    result = run([sys.executable, "-c", PROBE.format(statement=statement)], env)
    if result.returncode:
        raise SystemExit(result.stderr)
    elapsed, modules = json.loads(result.stdout)
    return float(elapsed), list(modules)


def importtime_lines(env: dict[str, str]) -> list[str]:
    result = run(
        [sys.executable, "-X", "importtime", "-c", f"import pytest; import {PLUGIN}"], env
    )
    return [line for line in result.stderr.splitlines() if "sqlwatch" in line.rsplit("|", 1)[-1]]


def plugin_import(env: dict[str, str], rounds: int) -> None:
    runs = [probe(f"import {PLUGIN}", env) for _ in range(rounds)]
    best_ms = min(ms for ms, _ in runs)
    modules = runs[0][1]
    others = [m for m in modules if not m.startswith("sqlwatch")]
    heavy = sorted({m.split(".")[0] for m in modules if m.split(".")[0] in HEAVY})
    print(f"\n   1. importing the plugin in a process that has imported pytest (best of {rounds})")
    print(f"      sqlwatch modules loaded: {[m for m in modules if m.startswith('sqlwatch')]}")
    print(f"      other modules loaded:    {others or 'none'}")
    verdict = "ok" if not heavy else "MISSED"
    print(f"      sqlglot / OpenTelemetry / psutil / SQLAlchemy: {heavy or 'none'}, {verdict}")
    mark = "ok" if best_ms <= IMPORT_TARGET_MS else "MISSED"
    print(f"      import time: {best_ms:.2f} ms (target <= {IMPORT_TARGET_MS:.0f} ms), {mark}")
    print("      python -X importtime (us: self | cumulative | module):")
    for line in importtime_lines(env):
        print(f"        {line.removeprefix('import time:').strip()}")

    full_ms = min(probe("import sqlwatch; sqlwatch.watch", env)[0] for _ in range(rounds))
    print("\n   2. for scale: what a session that uses sqlwatch loads, once")
    print(f"      import sqlwatch; sqlwatch.watch (SQLAlchemy, sqlglot...): {full_ms:.1f} ms")


def pytest_startup(env: dict[str, str], rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "test_empty.py").write_text("def test_nothing():\n    pass\n")
        Path(folder, "pytest.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
        base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_empty.py"]
        variants = {"with sqlwatch": base, "-p no:sqlwatch": [*base, "-p", "no:sqlwatch"]}
        wall: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for args in variants.values():  # warm-up: byte-code, file-system caches
            warm = run(args, env, folder)
            if warm.returncode:
                raise SystemExit(warm.stdout)
        for r in range(rounds):
            order = list(variants.items())
            if r % 2:
                order.reverse()
            for name, args in order:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter_ns()
                run(args, env, folder)
                wall[name].append((time.perf_counter_ns() - start) / 1e6)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                cpu[name].append(used * 1e3)
    print(f"\n   3. pytest start-up on one empty test ({rounds} alternated runs of each)")
    print(f"      {'':<16} {'wall min':>9} {'wall median':>12} {'CPU min':>9} {'CPU median':>11}")
    for name in ("-p no:sqlwatch", "with sqlwatch"):
        print(
            f"      {name:<16} {min(wall[name]):>6.1f} ms {statistics.median(wall[name]):>9.1f} ms"
            f" {min(cpu[name]):>6.1f} ms {statistics.median(cpu[name]):>8.1f} ms"
        )
    delta = statistics.median(
        a - b for a, b in zip(cpu["with sqlwatch"], cpu["-p no:sqlwatch"], strict=True)
    )
    mark = "ok" if delta <= STARTUP_TARGET_MS else "MISSED"
    target = f"target <= {STARTUP_TARGET_MS:.0f} ms"
    print(
        f"      added by the unused plugin (median of paired CPU-time differences): "
        f"{delta:+.1f} ms ({target}), {mark}"
    )
    print(
        "      (CPU time of the pytest process, user + system: less sensitive than wall"
        " time to\n       other processes on the machine; both are printed)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    print_header("the pytest plugin, installed but unused")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        run([sys.executable, "-c", f"import pytest, {PLUGIN}, sqlwatch.watch"], env)
        plugin_import(env, rounds)
        pytest_startup(env, rounds * 2)


if __name__ == "__main__":
    main()
