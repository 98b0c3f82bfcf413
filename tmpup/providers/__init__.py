"""The registry of built-in providers, imported lazily so that `tmpup --help` stays fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tmpup.errors import ConfigError

if TYPE_CHECKING:
    from tmpup.providers.base import Provider

#: provider id -> "module:Class"
PROVIDERS: dict[str, str] = {
    "qlik": "tmpup.providers.qlik:QlikProvider",
    "tus": "tmpup.providers.tus:TusProvider",
    "thulium": "tmpup.providers.thulium:ThuliumProvider",
    "pyrus": "tmpup.providers.pyrus:PyrusProvider",
    "kf5": "tmpup.providers.kf5:Kf5Provider",
    "enterprise-tester": "tmpup.providers.enterprise_tester:EnterpriseTesterProvider",
}


def provider_class(provider_id: str) -> type[Provider]:
    target = PROVIDERS.get(provider_id)
    if target is None:
        raise ConfigError(f"unknown provider {provider_id!r}", hint="one of: " + ", ".join(PROVIDERS))
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(f"provider {provider_id!r} is not available in this build of tmpup") from None
        raise
    cls: type[Provider] = getattr(module, attr)
    return cls
