"""The resident set size sqlwatch puts in ``Report.resources``: read from
``/proc/self/statm`` on Linux, psutil elsewhere and wherever /proc is missing."""

from __future__ import annotations

import os
import sys

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
