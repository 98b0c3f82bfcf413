"""Peak memory of a real tmpup process, measured the one way that is right on Linux.

`ru_maxrss` of a child started straight from pytest is wrong: at exec, Linux records the high-water
RSS of the address space the child leaves (`exec_mmap` -> `setmax_mm_hiwater_rss`), and a
fork/vfork/posix_spawn child of pytest leaves pytest's, which after a few hundred tests is near
200 MiB. So every measured tmpup is spawned by bench/launch.py, a small long-lived process (about
10 MiB), and the figure reported is that child's own `ru_maxrss` from `os.wait4`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from bench.servers import Launcher


def peak_rss_mib(args: list[str], env: dict[str, str] | None = None) -> tuple[int, float, bytes]:
    """Run `python -m tmpup ARGS`; return (exit status, its own peak RSS in MiB, its stdout)."""
    launcher = Launcher(python=sys.executable)
    try:
        with tempfile.TemporaryDirectory(prefix="tmpup-rss-") as folder:
            out = Path(folder) / "stdout"
            measured = launcher.run(
                [[sys.executable, "-m", "tmpup", *args]],
                {**os.environ, **(env or {})},
                cwd=Path.cwd(),
                stdout=out,
                timeout=600,
            )
            stdout = out.read_bytes() if out.exists() else b""
    finally:
        launcher.stop()
    if measured.error:
        raise RuntimeError(f"could not start tmpup: {measured.error}")
    return measured.status, measured.rss_mib, stdout
