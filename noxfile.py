"""Developer and CI sessions for sqlwatch: ``nox -l`` lists them, ``nox -s NAME`` runs one.

Every dependency comes from pyproject.toml's extras (one source of truth). The sessions
use the Python that runs nox; CI (``.ci/run``) runs lint, typecheck, tests and docs.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox
from nox.command import CommandFailed

nox.needs_version = ">=2024.3.2"  # nox.project.load_toml
nox.options.default_venv_backend = "uv|venv"  # uv when installed, else the stdlib venv
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]  # what bare `nox` runs
nox.options.error_on_external_run = True

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
POSTGRES_URL_VAR = "SQLWATCH_TEST_POSTGRES_URL"

# The SQLAlchemy series sqlwatch supports; each must fit pyproject's SQLAlchemy requirement.
SQLALCHEMY_SERIES = ["2.0", "2.1"]


def _extra(name: str) -> list[str]:
    """The requirements of one pyproject extra, for sessions that don't need the package."""
    return list(EXTRAS[name])


def _check_series_in_pyproject(session: nox.Session, series: str) -> None:
    """Fail if pyproject's SQLAlchemy requirement excludes this series (keeps both in sync)."""
    from packaging.requirements import Requirement

    for dep in PYPROJECT["project"]["dependencies"]:
        req = Requirement(dep)
        if req.name.lower() == "sqlalchemy":
            if not req.specifier.contains(f"{series}.0", prereleases=True):
                session.error(f"SQLAlchemy {series} is tested but pyproject requires {dep!r}")
            return
    session.error("pyproject.toml's dependencies do not list SQLAlchemy")


@nox.session
@nox.parametrize("sqlalchemy", SQLALCHEMY_SERIES, ids=SQLALCHEMY_SERIES)
def tests(session: nox.Session, sqlalchemy: str) -> None:
    """Run the pytest suite against the latest release of one SQLAlchemy series."""
    _check_series_in_pyproject(session, sqlalchemy)
    # One resolver run, so the pin and pyproject's requirements are satisfied together.
    session.install("-e", ".[test]", f"sqlalchemy~={sqlalchemy}.0")
    version = session.run(
        "python", "-c", "import sqlalchemy; print(sqlalchemy.__version__)", silent=True
    )
    if version is None:  # `nox --install-only`: nothing runs, nothing to check
        return
    version = str(version).strip()
    session.log(f"SQLAlchemy {version}")
    if not version.startswith(f"{sqlalchemy}."):
        session.error(f"expected SQLAlchemy {sqlalchemy}.x, got {version}")

    if os.environ.get(POSTGRES_URL_VAR):
        session.log(f"PostgreSQL tests use {POSTGRES_URL_VAR}={os.environ[POSTGRES_URL_VAR]}")
    elif os.environ.get("CI"):
        session.error(
            f"{POSTGRES_URL_VAR} is not set: in CI the PostgreSQL tests must run, not skip"
            ' (run `eval "$(.ci/start-postgres)"` first, as .ci/run does)'
        )
    else:
        session.warn(
            f"{POSTGRES_URL_VAR} is not set: PostgreSQL tests will be skipped"
            ' (start a server with `eval "$(.ci/start-postgres)"`)'
        )

    try:
        session.run("pytest", *session.posargs)
    except CommandFailed as exc:
        code = getattr(exc, "return_code", None)  # older nox: only in the message
        if code == 5 or (code is None and "exit code 5" in str(exc.reason)):
            session.error("pytest collected no tests (exit code 5): check testpaths/posargs")
        raise


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (no changes are made)."""
    session.install(*_extra("lint"))
    failed = []
    for args in (["check", "."], ["format", "--check", "--diff", "."]):
        try:
            session.run("ruff", *args)
        except CommandFailed:
            failed.append("ruff " + " ".join(args))
    if failed:
        session.error("failed: " + "; ".join(failed) + " (`ruff check --fix . && ruff format .`)")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the sqlwatch package with mypy (strict; config in pyproject.toml)."""
    session.install("-e", ".[typecheck]")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation with mkdocs in strict mode (warnings are errors)."""
    session.install(*_extra("docs"))
    session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def benchmarks(session: nox.Session) -> None:
    """Run every benchmarks/*.py script (or only those named as arguments); not run in CI."""
    if session.posargs:
        scripts = [Path(arg) for arg in session.posargs]
    else:
        scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    scripts = [s for s in scripts if s.name != "__init__.py"]
    if not scripts:
        session.error("no benchmarks/*.py scripts to run")
    missing = [str(s) for s in scripts if not s.is_file()]
    if missing:
        session.error(f"no such benchmark script: {', '.join(missing)}")
    session.install("-e", ".[test,fast]")
    for script in scripts:
        session.log(f"benchmark: {script}")
        session.run("python", str(script))
