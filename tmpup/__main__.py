"""`python -m tmpup` and the `tmpup` console script."""

from __future__ import annotations

import gc
import sys

#: Commands that talk HTTP: their start-up imports requests too (see `main`).
_NETWORK_COMMANDS = frozenset({"upload", "download", "info", "delete", "resume"})


def main() -> None:
    # Start-up imports typer, rich's pieces and (for network commands) requests: ~100,000 objects
    # that live as long as the process and are never garbage, yet the cyclic collector walks them
    # again and again while they are created (~8 ms of a ~120 ms start, bench/ "startup"). So the
    # collector is off while they load; they are then frozen (never scanned again) and it is on again
    # before the command runs, for whatever the transfer allocates.
    gc.disable()
    try:
        from tmpup.cli import main as run

        args = sys.argv[1:]
        if args and args[0] in _NETWORK_COMMANDS and not {"--help", "-h"} & set(args):
            import tmpup.http  # noqa: F401  (the command would import it first thing; its help would not)
    finally:
        gc.freeze()
        gc.enable()
    sys.exit(run())


if __name__ == "__main__":
    main()
