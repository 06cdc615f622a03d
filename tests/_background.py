"""Slow subprocess runs started in the background, so that they use the core the test
process leaves idle.

Most of the suite runs on one core: a test's torch work rarely keeps two busy, and the
examples' ``--fast`` runs, the benchmarks' quick runs and the hostile command-line corpus
are fresh interpreters the test process only waits for. A test that needs such a run
registers it (``job``), is marked ``@pytest.mark.background(NAME)`` and takes its result
from the ``background`` fixture (tests/conftest.py). Once collection is done, the runs of
the selected tests start one at a time, in the order the tests come, each with one torch
thread; a test whose run has not finished waits for it, one whose run has not started
starts it at once. Nothing here is a thread: the next run starts when a test finishes
and sees the previous one done (a Python thread in the test process would change what
the library does: batch-norm folding never traces while another thread lives). The runs
have the lowest priority (nice 19). Tried and measured slower, one whole run each: the
tests that need them put last, so that the runs overlap every other test (8 min 2 s
against 6 min 57 s: the runs then compete with the tests' own two-thread torch work,
browsers and kernels), and the SCHED_IDLE policy instead of nice (7 min 54 s).

Each run writes into a folder of its own, its output to files there (never a pipe a
full buffer could block); the folders are removed when the session ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = ["Done", "Job", "Scheduler", "job"]


@dataclass(frozen=True)
class Job:
    """A command line, run in ``cwd`` (the run's folder when None) within ``timeout``."""

    argv: Sequence[str]
    cwd: Path | None = None
    timeout: float = 300.0


@dataclass(frozen=True)
class Done:
    """A finished run: its exit status, its output and the folder it wrote into."""

    returncode: int
    stdout: str
    stderr: str
    folder: Path
    seconds: float


_JOBS: dict[str, Callable[[Path], Job]] = {}


def job(name: str) -> Callable[[Callable[[Path], Job]], Callable[[Path], Job]]:
    """Register ``factory(folder) -> Job`` as the run called ``name``."""

    def register(factory: Callable[[Path], Job]) -> Callable[[Path], Job]:
        if name in _JOBS and _JOBS[name] is not factory:
            raise ValueError(f"a background run called {name!r} is registered twice")
        _JOBS[name] = factory
        return factory

    return register


# Runs (and their children) at the lowest priority, nice 19: a run takes mostly the time
# the tests leave idle, and full speed when a test waits for it.
_NICE = ["nice", "-n", "19"] if shutil.which("nice") else []


@dataclass
class _Run:
    name: str
    folder: Path
    job: Job
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    done: Done | None = None
    files: list[BinaryIO] = field(default_factory=list)


class Scheduler:
    """Runs the registered runs ``names`` in order, one at a time (see the module)."""

    def __init__(self, names: Sequence[str]) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="xai-background-"))
        self._runs: dict[str, _Run] = {}
        for name in dict.fromkeys(names):
            if name not in _JOBS:
                raise KeyError(f"no background run called {name!r} is registered")
            folder = self._root / name
            folder.mkdir()
            self._runs[name] = _Run(name, folder, _JOBS[name](folder))
        self._queue = list(self._runs)
        self.poll()

    def _start(self, run: _Run) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        # a run's ray.init() starts a cluster of its own, never joins one a test started
        # (ray.cluster_utils.Cluster leaves its address where ray.init() looks first)
        env["RAY_ADDRESS"] = "local"
        out = (run.folder / ".stdout").open("wb")
        err = (run.folder / ".stderr").open("wb")
        run.files = [out, err]
        run.started = time.monotonic()
        run.process = subprocess.Popen(
            [*_NICE, *run.job.argv],
            cwd=run.job.cwd or run.folder,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
        )
        self._queue.remove(run.name)

    def _finish(self, run: _Run, returncode: int, timed_out: bool = False) -> None:
        for handle in run.files:
            handle.close()
        stderr = (run.folder / ".stderr").read_text(errors="replace")
        if timed_out:
            stderr += f"\n(killed: still running after {run.job.timeout:.0f} s)"
        run.done = Done(
            returncode,
            (run.folder / ".stdout").read_text(errors="replace"),
            stderr,
            run.folder,
            time.monotonic() - run.started,
        )

    def _running(self) -> list[_Run]:
        return [r for r in self._runs.values() if r.process is not None and r.done is None]

    def poll(self) -> None:
        """Collect finished runs; start the next queued one when none is running."""
        for run in self._running():
            assert run.process is not None
            if run.process.poll() is not None:
                self._finish(run, run.process.returncode)
            elif time.monotonic() - run.started > run.job.timeout:
                run.process.kill()
                run.process.wait()
                self._finish(run, -9, timed_out=True)
        if not self._running() and self._queue:
            self._start(self._runs[self._queue[0]])

    def result(self, name: str) -> Done:
        """The finished run ``name``, waiting for it (and starting it if it is queued)."""
        run = self._runs.get(name)
        if run is None:
            raise KeyError(
                f"background run {name!r} was not scheduled: mark the test "
                f"@pytest.mark.background({name!r})"
            )
        if run.process is None:
            self._start(run)
        if run.done is None:
            assert run.process is not None
            left = run.job.timeout - (time.monotonic() - run.started)
            try:
                run.process.wait(timeout=max(left, 0.0))
            except subprocess.TimeoutExpired:
                run.process.kill()
                run.process.wait()
                self._finish(run, -9, timed_out=True)
            else:
                self._finish(run, run.process.returncode)
        self.poll()
        assert run.done is not None
        return run.done

    def close(self) -> None:
        """Stop what still runs and remove every run's folder."""
        for run in self._running():
            assert run.process is not None
            run.process.kill()
            run.process.wait()
            for handle in run.files:
                handle.close()
        shutil.rmtree(self._root, ignore_errors=True)
