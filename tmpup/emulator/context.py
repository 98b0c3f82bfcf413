"""What every mount shares: demo credentials, the blob store, the clock, faults and an id source.

`Credentials` holds the demo accounts `tmpup serve` prints at start; `Ids` makes provider-style
identifiers (seedable, so a test can ask for the same ids on every run); `EmulatorContext`
bundles them for the mounts.
"""

from __future__ import annotations

import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from .clock import Clock
from .faults import FaultSet
from .store import BlobStore


@dataclass(frozen=True)
class Credentials:
    """The accounts the emulator accepts. Defaults are public demo values, printed at start."""

    qlik_token: str = "demo-qlik-token"
    tus_token: str | None = None
    thulium_username: str = "api_user"
    thulium_password: str = "demo-thulium-pass"
    pyrus_login: str = "bot@demo.pyrus"
    pyrus_security_key: str = "demo-pyrus-key"
    kf5_email: str = "agent@demo.kf5.com"
    kf5_password: str = "demo-kf5-pass"
    kf5_api_token: str = "demo-kf5-token"
    et_username: str = "Administrator"
    et_password: str = "demo-et-pass"

    SECRETS: ClassVar[frozenset[str]] = frozenset(
        {"qlik_token", "tus_token", "thulium_password", "pyrus_security_key", "kf5_password", "kf5_api_token",
         "et_password"}
    )  # fmt: skip

    def shown(self, field_name: str) -> str:
        """A credential as the start-up banner prints it: the public demo value, or `****` for one the
        user set (`--qlik-token`, `TMPUP_EMULATOR_QLIK_TOKEN`): that may be a real secret."""
        value = getattr(self, field_name)
        if field_name in self.SECRETS and value != getattr(Credentials, field_name):
            return "****"
        return str(value)


class Ids:
    """Identifier factory; with a `seed` the sequence is reproducible. Thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}

    def hex(self, length: int) -> str:
        """`length` lowercase hex digits (Qlik ids are 24, tusd-style upload ids 32)."""
        with self._lock:
            return "".join(self._random.choice("0123456789abcdef") for _ in range(length))

    def uuid(self) -> str:
        """A random (version 4) UUID string."""
        with self._lock:
            return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def number(self, namespace: str, start: int = 1) -> int:
        """The next integer of a per-namespace counter (numeric attachment ids and the like)."""
        with self._lock:
            value = self._counters.get(namespace, start)
            self._counters[namespace] = value + 1
            return value


@dataclass
class EmulatorContext:
    """Shared state handed to every mount."""

    store: BlobStore
    clock: Clock
    faults: FaultSet = field(default_factory=FaultSet)
    credentials: Credentials = field(default_factory=Credentials)
    ids: Ids = field(default_factory=Ids)
    max_size: int | None = None
