"""Run Python snippets and ``xai`` commands in fresh processes without paying the imports
of torch, numpy, matplotlib and xai each time: a server process imports them once and
forks a child per job.

Each child is a real, separate process (its own memory, cwd, exit status, atexit
handlers, standard streams written to files), as ``python -c CODE`` or the ``xai``
console script would be, except that those modules are already imported. The tests use
it for the docs' blocks and commands (tests/test_docs.py), which would otherwise spend
about a second and a half of every one importing torch. A job that must observe its own
imports (``sys.modules``) runs as a plain subprocess instead: ``needs_fresh(code)``.

The server imports torch but runs no torch operation, so no thread pool exists when it
forks (OpenMP's pools do not survive a fork).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

PRELOAD = ("numpy", "torch", "cv2", "xai", "xai.cli", "xai.models", "xai.cam", "xai.viz.overlay")


_SHARED: list[ForkServer] = []


def shared() -> ForkServer:
    """One server for the whole test session, started on first use, stopped at exit."""
    if not _SHARED or _SHARED[0].process.poll() is not None:
        import atexit

        _SHARED[:] = [ForkServer()]
        atexit.register(_SHARED[0].close)
    return _SHARED[0]


def run_xai(*args: Any, cwd: Path | None = None, timeout: float = 600) -> Any:
    """``xai *args`` as ``subprocess.run([xai, ...], capture_output=True, text=True)``
    would run it, in a child forked from the shared server (with this process's
    current environment)."""
    return shared().run(
        argv=[str(a) for a in args],
        cwd=Path(cwd) if cwd is not None else Path.cwd(),
        timeout=timeout,
        env=dict(os.environ),
    )


def needs_fresh(code: str) -> bool:
    """Whether a snippet inspects what is imported (it must start from nothing)."""
    return "sys.modules" in code


class ForkServer:
    """A server process holding the preloaded modules; ``run`` forks a child per job."""

    def __init__(self) -> None:
        env = {**os.environ, "MPLBACKEND": "Agg"}
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            bufsize=1,
        )
        assert self.process.stdout is not None
        self._fd = self.process.stdout.fileno()
        self._buffer = b""
        self._lock = threading.Lock()  # one job at a time: callers in threads take turns
        ready = self._line(120)
        if ready != "ready":
            raise RuntimeError(f"the fork server did not start: {ready!r}")

    def _line(self, timeout: float) -> str | None:
        """The server's next line, or None after ``timeout`` seconds (read unbuffered, so
        that ``select`` sees every line not yet taken)."""
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                raise RuntimeError("the fork server exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()

    def run(
        self,
        *,
        code: str | None = None,
        argv: list[str] | None = None,
        cwd: Path,
        timeout: float = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python -c code`` (or ``xai *argv``) in ``cwd``, in a forked child."""
        with self._lock, tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch) / "out", Path(scratch) / "err"
            job = {"code": code, "argv": argv, "cwd": str(cwd), "out": str(out), "err": str(err)}
            job["env"] = env
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(job) + "\n")
            self.process.stdin.flush()
            pid = int(self._line(60) or -1)
            status_line = self._line(timeout)
            if status_line is None:
                os.kill(pid, signal.SIGKILL)
                self._line(60)
                raise subprocess.TimeoutExpired(code or argv or [], timeout)
            status = int(status_line)
            return subprocess.CompletedProcess(
                argv or ["python", "-c", code], status, out.read_text(), err.read_text()
            )

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=30)


def _serve() -> dict[str, Any] | None:
    """The server's loop; returns the job in a forked child, None when stdin closes."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return job
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    return None


def _child(job: dict[str, Any]) -> int:
    """In the forked child: the job's streams, directory and environment, then its code."""
    sys.stdin.close()
    out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.chdir(job["cwd"])
    if job["env"] is not None:
        os.environ.clear()
        os.environ.update(job["env"])
    if job["argv"] is not None:
        from xai.cli import main

        sys.argv = ["xai", *job["argv"]]
        return main(job["argv"])
    sys.argv = ["-c"]
    sys.path[0] = ""  # as `python -c`: the current directory first
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(job["code"], "<string>", "exec"), namespace)
    return 0


if __name__ == "__main__":
    job = _serve()
    if job is None:
        sys.exit(0)
    import atexit

    try:
        status = _child(job)
    except SystemExit as stop:
        code = stop.code
        status = code if isinstance(code, int) else (0 if code is None else 1)
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    # The exit handlers (Ray's shutdown, temporary files), then out without tearing down
    # every module, which a fresh interpreter's exit would spend a third of a second on.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
