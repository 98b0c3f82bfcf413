"""`tmpup info ID`: from the API where it has an info endpoint, else from tmpup's local receipts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tmpup.commands.ids import check_id
from tmpup.errors import GoneError, NotFoundError
from tmpup.providers.base import Describable, Info
from tmpup.runtime import Runtime

RECEIPT_FIELDS = ("id", "token", "name", "size", "file", "url", "uploaded_at", "expires_at", "sha256")


def run(rt: Runtime, id: str) -> Info:
    check_id(id)  # before the id goes into a URL or a receipt lookup
    provider = rt.provider
    info = provider.info(id) if isinstance(provider, Describable) else from_receipt(rt, id)
    _render(rt, info)
    if info.source == "receipt" and info.fields.get("expired") is True:
        # The fields are printed (`expired true`), and the exit code says what they say: a script that
        # runs `tmpup info TOKEN && attach` must not attach a dead token (exit 6, as an API's 410 is).
        when = _expiry(info.fields.get("expires_at"))
        raise GoneError(
            f"{rt.settings.provider}: {id} expired at {_shown_time(when)} (its local receipt says so)",
            hint=f"upload the file again for a new {provider.handle}",
            provider=rt.settings.provider,
        )
    return info


def from_receipt(rt: Runtime, id: str) -> Info:
    receipt = rt.state.find_receipt(id, rt.settings.provider)
    if receipt is None:
        raise NotFoundError(
            f"no receipt of {id!r}: {rt.settings.provider} has no info endpoint, and tmpup did not upload it "
            f"from this machine",
            hint=f"receipts are kept in {rt.state.receipts_path}",
        )
    fields: dict[str, Any] = {k: receipt.get(k) for k in RECEIPT_FIELDS if receipt.get(k) is not None}
    for key, value in receipt.items():
        if key not in fields and key not in ("profile", "provider", "resumed") and value is not None:
            fields[key] = value
    when = _expiry(receipt.get("expires_at"))
    if when is not None:
        fields["expired"] = when <= rt.clock()
    fields["source"] = "local receipt"
    return Info(id, fields, source="receipt")


def _expiry(value: Any) -> dt.datetime | None:
    """A receipt's `expires_at` as an aware time (a hand-written one without an offset is UTC)."""
    if not value:
        return None
    when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def _shown_time(when: dt.datetime | None) -> str:
    if when is None:  # pragma: no cover - only an expired receipt (which has a time) gets here
        return "an unknown time"
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _render(rt: Runtime, info: Info) -> None:
    if rt.output.json_mode:
        rt.output.json({k: v for k, v in info.fields.items()})
        return
    rt.output.fields(info.fields)
