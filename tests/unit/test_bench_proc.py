"""bench.proc's CPU clock: the threads' exact time on a CPU, or stat's ticks when a thread ended."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from bench.proc import cpu_seconds, cpu_seconds_between, thread_nanoseconds

# A process whose second thread burns CPU when told to, then either ends or stays (blocked).
BURNER = """
import sys, threading, time

def burn():
    sys.stdin.readline()
    end = time.thread_time() + 0.3
    while time.thread_time() < end:
        pass
    print("burnt", flush=True)
    if sys.argv[1] == "stay":
        sys.stdin.readline()

thread = threading.Thread(target=burn)
thread.start()
print("ready", flush=True)
thread.join()
sys.stdin.readline()
"""


@contextmanager
def burner(mode: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURNER, mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def burn(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "burnt\n"


def test_the_threads_exact_time_is_counted_and_agrees_with_the_ticks() -> None:
    with burner("stay") as proc:
        before, ticks = thread_nanoseconds([proc.pid]), cpu_seconds([proc.pid])
        assert len(before) == 2  # the main thread and the burner
        burn(proc)
        used = cpu_seconds_between([proc.pid], before, ticks)
        by_ticks = cpu_seconds([proc.pid]) - ticks
    assert 0.3 <= used < 0.6  # the burner's 0.3 s of thread time, and what the process did besides
    assert abs(used - by_ticks) <= 0.03  # ticks: 10 ms each, utime and stime rounded apart


def test_a_thread_that_ended_meanwhile_falls_back_to_the_ticks() -> None:
    with burner("end") as proc:
        before, ticks = thread_nanoseconds([proc.pid]), cpu_seconds([proc.pid])
        burn(proc)
        while len(thread_nanoseconds([proc.pid])) > 1:  # the burner's thread is gone once this is 1
            pass
        used = cpu_seconds_between([proc.pid], before, ticks)
        by_ticks = cpu_seconds([proc.pid]) - ticks  # the process is blocked reading: the ticks stand still
    assert used == by_ticks
    assert used >= 0.29  # the ended thread's time is in the ticks (its own count went with it)
