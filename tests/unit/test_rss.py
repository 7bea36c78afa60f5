"""The resident set size sqlwatch puts in ``Report.resources``: read from
``/proc/self/statm`` on Linux, psutil elsewhere and wherever /proc is missing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sqlwatch import _rss

MB = 1024 * 1024


def test_current_rss_is_what_psutil_reads() -> None:
    ours = _rss.current_rss()
    theirs = psutil.Process().memory_info().rss
    assert abs(ours - theirs) < 4 * MB  # read a moment apart, in a live process


def test_growing_memory_shows() -> None:
    before = _rss.current_rss()
    ballast = bytearray(64 * MB)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page: resident
    assert _rss.current_rss() - before > 48 * MB
    del ballast


def test_without_proc_it_falls_back_to_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoProc:
        def read(self) -> int:
            raise FileNotFoundError("/proc/self/statm")

    monkeypatch.setattr(_rss, "_reader", NoProc())
    rss = _rss.current_rss()
    assert abs(rss - psutil.Process().memory_info().rss) < 4 * MB
    assert isinstance(_rss._reader, _rss._Psutil)  # decided once


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
# Python 3.12+ warns about fork() in a process with threads (other tests' exporters);
# the child here only reads memory figures and exits.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_reads_its_own_memory() -> None:
    """The descriptor opened in the parent names the parent's /proc entry: a child
    that kept using it would read the parent's RSS, 64 MB short of its own here."""
    reader = _rss._Statm()
    reader.read()  # the descriptor is open in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: grow, then report what it reads and what psutil reads
        try:
            ballast = bytearray(64 * MB)
            ballast[::4096] = b"x" * len(ballast[::4096])
            ours, theirs = reader.read(), psutil.Process().memory_info().rss
            os.write(write_end, f"{ours} {theirs}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    ours, theirs = map(int, os.read(read_end, 64).split())
    os.waitpid(pid, 0)
    os.close(read_end)
    assert abs(ours - theirs) < 4 * MB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_daemonized_child_keeps_its_own_descriptors(tmp_path: Path) -> None:
    """A daemon forks, closes every descriptor it inherited and opens its own
    files, which take the same numbers. The RSS reader must not close the
    parent's descriptor by number then: it is the child's log file by now."""
    reader = _rss._Statm()
    reader.read()  # the descriptor is open in the parent
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in range(3, 256):
                if fd != write_end:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            log = os.open(tmp_path / "daemon.log", os.O_WRONLY | os.O_CREAT)
            if log != reader._fd:  # as a daemon puts its log on stdout: the same number
                os.dup2(log, reader._fd)
                os.close(log)
                log = reader._fd
            rss = reader.read()
            os.write(log, b"still mine\n")
            os.close(log)
            os.write(write_end, f"{rss}".encode())
        except BaseException as exc:
            os.write(write_end, f"error {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 200).decode()
    os.waitpid(pid, 0)
    os.close(read_end)
    assert answer.isdigit(), answer
    assert int(answer) > MB
    assert (tmp_path / "daemon.log").read_text() == "still mine\n"


SIGNAL_DURING_SAMPLING = """
import os, signal
from sqlalchemy import create_engine, text
import sqlwatch
from sqlwatch import _rss

engine = create_engine("sqlite://")
sqlwatch.instrument(engine, exporters=())
read_rss = _rss.current_rss
delivered = []

def on_signal(signum, frame):
    # A worker's handler that records its state in the database, in a watch.
    with sqlwatch.watch("signal handler"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    delivered.append(signum)

def interrupted_read():
    if not delivered:  # the signal arrives while the sampler reads
        os.kill(os.getpid(), signal.SIGUSR1)
    return read_rss()

signal.signal(signal.SIGUSR1, on_signal)
_rss.current_rss = interrupted_read
_rss.SAMPLER.next_ns = 0
with sqlwatch.watch("job"):  # its close samples
    pass
print("done", delivered)
"""


@pytest.mark.skipif(not hasattr(os, "kill") or sys.platform == "win32", reason="POSIX signals")
def test_a_signal_handler_can_open_a_watch_while_rss_is_sampled() -> None:
    """The handler runs in the sampling thread, in the middle of the sample: its
    watch registers with the sampler, which must not wait for its own lock.
    A subprocess, because the old behaviour was to hang for ever."""
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_DURING_SAMPLING],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == f"done [{signal.SIGUSR1.value}]", done.stderr
