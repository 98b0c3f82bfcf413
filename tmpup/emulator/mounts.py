"""The registry of built-in provider mounts, in the order `tmpup serve` lists them.

To add a provider, write its `Mount` subclass in its own module (see `mount.py`) and append it
here; imports stay inside the function so that importing the package remains cheap.
"""

from __future__ import annotations

from .mount import Mount


def builtin_mounts() -> list[type[Mount]]:
    """Mount classes the emulator serves by default."""
    from .enterprise_tester import EnterpriseTesterMount
    from .kf5 import Kf5Mount
    from .pyrus import PyrusMount
    from .qlik import QlikMount
    from .thulium import ThuliumMount
    from .tus import TusMount

    return [QlikMount, TusMount, ThuliumMount, PyrusMount, Kf5Mount, EnterpriseTesterMount]
