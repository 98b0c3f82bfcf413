"""`python -m tmpup.demo`: a real upload -> info -> download round trip, with no account and no network.

It starts the emulator (`tmpup serve`'s server) on a free loopback port, writes a throw-away profile,
and runs the real `tmpup` program three times, printing each command and what it answered. The bytes
downloaded are compared with the bytes uploaded. Exit status 0 means the round trip worked.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _tmpup(args: list[str], env: dict[str, str], cwd: Path) -> str:
    print(f"$ tmpup {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "tmpup", *args], env=env, cwd=cwd, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"demo: tmpup exited {proc.returncode}")
    return proc.stdout.strip()


def main() -> int:
    from tmpup.emulator import Emulator

    with tempfile.TemporaryDirectory(prefix="tmpup-demo-") as tmp, Emulator(port=0) as emu:
        root = Path(tmp)
        config = root / "config.toml"
        config.write_text(
            'default_profile = "demo"\n\n'
            "[profiles.demo]\n"
            'provider = "qlik"\n'
            f'url = "{emu.url}/qlik"\n'
            'token_env = "DEMO_QLIK_TOKEN"\n'
            'ttl = "1h"\n',
            encoding="utf-8",
        )
        config.chmod(0o600)
        # The demo's own profile, whatever this shell exports: a TMPUP_PROVIDER/TMPUP_URL left from the
        # README's next step (or a TMPUP_PROFILE) would otherwise send the demo to that server instead.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TMPUP_")}
        env.update(
            TMPUP_CONFIG=str(config),
            TMPUP_STATE_DIR=str(root / "state"),
            DEMO_QLIK_TOKEN=emu.credentials.qlik_token,
        )
        sample = root / "hello from tmpup.txt"
        with sample.open("w", encoding="utf-8") as fh:
            for i in range(20000):
                fh.write(f"line {i}: the quick brown fox jumps over the lazy dog\n")
        print(f"emulator: {emu.url} (Qlik temp-contents at {emu.url}/qlik)")
        print(f"profile:  {config}\n")
        upload_id = _tmpup(["upload", str(sample), "--progress", "none"], env, root)
        _tmpup(["info", upload_id], env, root)
        out = root / "downloaded.txt"
        _tmpup(["download", upload_id, "-o", str(out), "--progress", "none"], env, root)
        if _sha256(out) != _sha256(sample):
            print("demo: the downloaded bytes differ from the uploaded ones", file=sys.stderr)
            return 9
        print(f"\nround trip OK: {sample.stat().st_size} bytes up and down, sha256 {_sha256(out)[:16]}…")
        print(f"next: run `{_shown_tmpup()} serve` in one terminal and point a profile at it (see README).")
    return 0


def _shown_tmpup() -> str:
    """How to run tmpup from here: `tmpup` when it is on PATH, else the venv's script (after the
    Quickstart, `.venv/bin/tmpup`), shown relative to the current folder when it is inside it."""
    import shutil

    script = Path(sys.executable).parent / "tmpup"
    if shutil.which("tmpup") == str(script) or not script.exists():
        return "tmpup"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


if __name__ == "__main__":
    sys.exit(main())
