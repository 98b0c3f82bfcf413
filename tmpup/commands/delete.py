"""`tmpup delete ID`: where the API can delete (KF5, tus termination)."""

from __future__ import annotations

from tmpup.commands.ids import check_id
from tmpup.providers.base import Deletable
from tmpup.runtime import Runtime


def run(rt: Runtime, id: str) -> None:
    provider = rt.provider
    if not isinstance(provider, Deletable):
        why = "the temporary file expires by itself" if provider.id in ("qlik", "thulium", "pyrus") else ""
        raise provider.unsupported("delete", why)
    check_id(id)  # before the id goes into a URL
    provider.delete(id)
    if rt.output.json_mode:
        rt.output.json({"id": id, "deleted": True})
    else:
        rt.messages.note(f"deleted {id}")
