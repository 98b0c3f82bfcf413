"""The tmpup emulator: a local server speaking each provider's API (`tmpup serve`, and the tests).

Public names are loaded on first use so that `import tmpup.emulator` stays cheap:
`Emulator` and `serve_forever` (server.py), `Credentials` (context.py), `Fault` (faults.py),
`Clock` (clock.py). Writing a new provider mount is described in `mount.py`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .clock import Clock
    from .context import Credentials
    from .faults import Fault
    from .server import Emulator, serve_forever

__all__ = ["Clock", "Credentials", "Emulator", "Fault", "serve_forever"]

_WHERE = {
    "Clock": ".clock",
    "Credentials": ".context",
    "Emulator": ".server",
    "Fault": ".faults",
    "serve_forever": ".server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
