"""`python -m tmpup` and the `tmpup` console script."""

from __future__ import annotations

import sys


def main() -> None:
    from tmpup.cli import main as run

    sys.exit(run())


if __name__ == "__main__":
    main()
