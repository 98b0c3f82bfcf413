"""The launcher: runs each measured command as its child and reports wall time and peak RSS (os.wait4).

    python -I -S bench/launch.py        # one JSON request per stdin line, one JSON answer per line

Why a separate small process: Linux charges a child, at exec, with the high-water RSS of the address
space it leaves (`exec_mmap` -> `setmax_mm_hiwater_rss`), and a `posix_spawn`/vfork child leaves its
parent's. A child started straight from the harness would inherit the harness's peak; started from
this process (only `os`, `sys`, `json`, `time`, `signal` imported; about 10 MiB) the floor is this
process's own, which the harness measures with `/bin/true` and reports.

Request: `{"argvs": [[...], ...], "env": {...}, "cwd": "...", "stdout": PATH, "stderr": PATH,
"stderr_tty": BOOL, "timeout": SECONDS}`; the argvs run one after another (200 curl processes are one
measurement). With `stderr_tty`, the child's stderr is a pseudo-terminal of 120 columns whose output
this process copies to the stderr PATH as it comes, as a terminal would take it: a progress bar is
measured as users see it (redrawn in place), not in its one-final-line form for pipes and files.
Answer: `{"status", "wall", "maxrss_kib", "utime", "stime", "failed_argv"}`; `wall` spans the first
spawn to the last reap; `maxrss_kib` is the largest of the children's; CPU times are summed.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time


def run_one(
    argv: list[str],
    env: dict[str, str],
    cwd: str | None,
    stdout: str | None,
    stderr: str | None,
    deadline: float,
    stderr_tty: bool = False,
) -> tuple[int, resource.struct_rusage]:
    actions: list[tuple[object, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, stdout or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    master = -1
    if stderr_tty:
        master, terminal = _terminal()
        actions.append((os.POSIX_SPAWN_DUP2, terminal, 2))
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 2, stderr or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    if cwd:
        os.chdir(cwd)
    path = argv[0]
    if os.sep not in path:
        for folder in env.get("PATH", os.defpath).split(os.pathsep):
            candidate = os.path.join(folder, path)
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    try:
        pid = os.posix_spawn(path, argv, env, file_actions=actions)
    finally:
        if stderr_tty:
            os.close(terminal)

    def kill(signum: int, frame: object) -> None:
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, kill)
    signal.alarm(max(1, int(deadline - time.monotonic())))
    if stderr_tty:
        _copy_terminal(master, stderr or os.devnull)
    _pid, status, usage = os.wait4(pid, 0)
    signal.alarm(0)
    return os.waitstatus_to_exitcode(status), usage


def _terminal() -> tuple[int, int]:
    """A pseudo-terminal pair, its size set to 40 rows of 120 columns."""
    import fcntl
    import struct
    import termios

    master, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    os.set_inheritable(terminal, False)
    return master, terminal


def _copy_terminal(master: int, path: str) -> None:
    """Read what the child writes to the terminal until it closes it (EIO once no process holds it)."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        while True:
            try:
                ready, _, _ = select.select([master], [], [])
                data = os.read(master, 65536) if ready else b""
            except InterruptedError:
                continue
            except OSError:  # EIO: the child's side is closed
                break
            if not data:
                break
            out.write(data)
    os.close(master)


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        env = request.get("env") or dict(os.environ)
        deadline = time.monotonic() + float(request.get("timeout", 3600))
        status, maxrss, utime, stime = 0, 0, 0.0, 0.0
        failed: list[str] | None = None
        error = None
        started = time.perf_counter()
        for argv in request["argvs"]:
            try:
                status, usage = run_one(
                    argv,
                    env,
                    request.get("cwd"),
                    request.get("stdout"),
                    request.get("stderr"),
                    deadline,
                    bool(request.get("stderr_tty")),
                )
            except OSError as exc:
                status, error = 127, str(exc)
            else:
                maxrss = max(maxrss, usage.ru_maxrss)
                utime += usage.ru_utime
                stime += usage.ru_stime
            if status != 0:
                failed = argv
                break
        answer = {
            "status": status,
            "wall": time.perf_counter() - started,
            "maxrss_kib": maxrss,
            "utime": utime,
            "stime": stime,
            "failed_argv": failed,
            "error": error,
        }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
