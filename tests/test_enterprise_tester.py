"""Enterprise Tester end to end: the real CLI against the emulator over HTTP.

`et_config` is meant for the shared contract suite as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import make_file, run, sha256_file, write_profile
from tests.rss import peak_rss_mib
from tests.test_pyrus import NAMES
from tmpup.emulator import Fault

PROVIDER = "enterprise-tester"
#: Matches the upload request (POST .../temporaryattachmentset/{id}), not set creation (...sets).
UPLOAD_PATH = r"/temporaryattachmentset/[^/]+$"


def et_config(emulator: Any, config_path: Path, **keys: str) -> str:
    """Write a default `enterprise-tester` profile for the emulator (password in a file); return its name.

    `keys` add profile keys (e.g. `set`) or replace the defaults.
    """
    secret = config_path.parent / "et-password"
    secret.write_text(emulator.credentials.et_password + "\n")
    values = {
        "provider": PROVIDER,
        "url": f"{emulator.url}/{PROVIDER}",
        "username": emulator.credentials.et_username,
        "password_file": str(secret),
        "retries": 2,
        **keys,
    }
    return write_profile(config_path, "et", values)


@pytest.fixture
def profile(emulator: Any, config_path: Path) -> str:
    return et_config(emulator, config_path)


def count_uploads(emulator: Any) -> Fault:
    """A harmless fault that counts upload requests (its remaining uses go down by one per request)."""
    return emulator.faults.add(Fault(provider=PROVIDER, method="POST", path=UPLOAD_PATH, delay=0.0, times=1000))


def uploads_seen(emulator: Any, fault: Fault) -> int:
    remaining = dict((f, left) for f, left in emulator.faults.active()).get(fault, 0)
    return 1000 - int(remaining or 0)


def upload_json(*args: str) -> list[dict[str, Any]]:
    result = run("upload", *args, "--json", "--progress", "none")
    assert result.code == 0, result.err
    assert result.err == ""
    return [json.loads(line) for line in result.lines]


def test_several_files_go_in_one_request_into_one_new_set(
    profile: str, emulator: Any, tmp_path: Path, state_dir: Path
) -> None:
    counter = count_uploads(emulator)
    sizes = [0, 1, 3 * 1024 * 1024 + 5]
    files = [make_file(tmp_path / f"f{i}.bin", size, seed=i + 1) for i, size in enumerate(sizes)]
    records = upload_json(*map(str, files))
    assert uploads_seen(emulator, counter) == 1
    assert [r["name"] for r in records] == [f.name for f in files]
    assert [r["size"] for r in records] == sizes
    (set_id,) = {r["set_id"] for r in records}
    assert len({r["id"] for r in records}) == 3
    for record, src in zip(records, files, strict=True):
        assert record["provider"] == PROVIDER and record["profile"] == profile
        assert record["url"].endswith(f"/api/attachment/{record['id']}/contents")
        assert emulator.blob_sha256(PROVIDER, record["id"]) == sha256_file(src)
    receipts = [json.loads(line) for line in (state_dir / "receipts.jsonl").read_text().splitlines()]
    assert [r["id"] for r in receipts] == [r["id"] for r in records]

    info = run("info", set_id, "--json")
    assert info.code == 0, info.err
    listing = json.loads(info.out)
    assert listing["attachments"] == 3 and listing["total_size"] == sum(sizes)
    assert [(i["id"], i["file_name"], i["size"]) for i in listing["items"]] == [
        (r["id"], r["name"], r["size"]) for r in records
    ]

    out = tmp_path / "out"
    out.mkdir()
    for record, src in zip(records, files, strict=True):
        got = run("download", record["id"], "-o", str(out), "--progress", "none")
        assert got.code == 0, got.err
        assert sha256_file(out / src.name) == sha256_file(src)


def test_human_output_is_one_attachment_id_per_file(profile: str, tmp_path: Path) -> None:
    files = [str(make_file(tmp_path / f"h{i}.bin", 10, seed=i)) for i in range(2)]
    result = run("upload", *files, "--progress", "none")
    assert result.code == 0, result.err
    assert len(result.lines) == 2 and all(len(line) == 36 for line in result.lines)


def test_one_progress_bar_per_file(profile: str, tmp_path: Path) -> None:
    sizes = {"p0.bin": 5, "p1.bin": 2 * 1024 * 1024 + 3}
    files = [str(make_file(tmp_path / name, size)) for name, size in sizes.items()]
    result = run("upload", *files, "--progress", "json")
    assert result.code == 0, result.err
    events = [json.loads(line) for line in result.err.splitlines()]
    done = {e["name"]: e for e in events if e["event"] == "done"}
    assert set(done) == set(sizes)
    for name, size in sizes.items():
        assert done[name]["bytes"] == done[name]["total"] == size


def test_single_file_and_an_existing_set(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    created = requests.post(
        f"{emulator.url}/{PROVIDER}/api/temporaryattachmentsets",
        auth=(emulator.credentials.et_username, emulator.credentials.et_password),
    ).json()["Id"]
    et_config(emulator, config_path, set=created)
    first = upload_json(str(make_file(tmp_path / "one.txt", 100)))
    second = upload_json(str(make_file(tmp_path / "two.txt", 200)))
    assert first[0]["set_id"] == second[0]["set_id"] == created
    listing = json.loads(run("info", created, "--json").out)
    assert [i["file_name"] for i in listing["items"]] == ["one.txt", "two.txt"]
    assert len(emulator.mounts[PROVIDER].sets) == 1


@pytest.mark.parametrize("name", [*NAMES, "Crème brûlée.txt"])
def test_odd_names_arrive_exactly(profile: str, emulator: Any, tmp_path: Path, name: str) -> None:
    src = make_file(tmp_path / "data.bin", 1000)
    (record,) = upload_json(str(src), "--name", name)
    blob = emulator.store.get(PROVIDER, record["id"])
    assert blob.name == name and blob.extra["display_name"] == name
    dest = tmp_path / "dl"
    dest.mkdir()
    got = run("download", record["id"], "-o", str(dest), "--progress", "none")
    assert got.code == 0, got.err
    assert sha256_file(dest / name) == sha256_file(src)


def test_a_name_with_a_line_break_is_refused_before_any_request(profile: str, emulator: Any, tmp_path: Path) -> None:
    good = make_file(tmp_path / "good.txt", 10)
    bad = make_file(tmp_path / "two\rlines.txt", 10)
    result = run("upload", str(good), str(bad), "--progress", "none")
    assert result.code == 7
    assert "control character" in result.err
    assert emulator.mounts[PROVIDER].sets == {}


def test_options_et_cannot_honour(profile: str, emulator: Any, tmp_path: Path) -> None:
    files = [str(make_file(tmp_path / f"o{i}.bin", 10, seed=i)) for i in range(2)]
    resumable = run("upload", *files, "--resumable", "--progress", "none")
    assert resumable.code == 8
    assert emulator.mounts[PROVIDER].sets == {}
    ttl = run("upload", *files, "--ttl", "2h", "--progress", "none")
    assert ttl.code == 0, ttl.err
    assert "--ttl is ignored" in ttl.err


def test_a_missing_file_among_several_is_a_partial_failure(profile: str, emulator: Any, tmp_path: Path) -> None:
    good = [str(make_file(tmp_path / f"g{i}.bin", 10, seed=i)) for i in range(2)]
    result = run("upload", good[0], str(tmp_path / "missing.bin"), good[1], "--progress", "none")
    assert result.code == 11
    assert "missing.bin: no such file" in result.err
    assert len(result.lines) == 2
    assert len(emulator.store.blobs(PROVIDER)) == 2


def test_errors_and_their_exit_codes(profile: str, emulator: Any, config_path: Path) -> None:
    unknown_set = run("info", "4bb709c2-e0e7-4af3-9f60-a045016a9610")
    assert unknown_set.code == 5
    assert "was not found" in unknown_set.err  # the server's Message is shown
    unknown_attachment = run("download", "00000000-0000-0000-0000-000000000000", "--progress", "none")
    assert unknown_attachment.code == 5
    (config_path.parent / "et-password").write_text("wrong-password\n")
    denied = run("info", "4bb709c2-e0e7-4af3-9f60-a045016a9610")
    assert denied.code == 4
    assert "Authorization has been denied" in denied.err
    assert "wrong-password" not in denied.err


def test_an_unknown_configured_set_is_not_found(emulator: Any, config_path: Path, tmp_path: Path) -> None:
    et_config(emulator, config_path, set="4bb709c2-e0e7-4af3-9f60-a045016a9610")
    result = run("upload", str(make_file(tmp_path / "a.bin", 10)), "--progress", "none")
    assert result.code == 5


@pytest.mark.parametrize(
    "fault",
    [
        Fault(provider=PROVIDER, method="POST", path=UPLOAD_PATH, status=503, times=1),
        Fault(provider=PROVIDER, method="POST", path=UPLOAD_PATH, drop_after=2_000_000, times=1),
        Fault(provider=PROVIDER, method="POST", path="/temporaryattachmentsets", status=502, times=1),
    ],
    ids=["503", "dropped", "set-creation-502"],
)
def test_retries_resend_every_file(profile: str, emulator: Any, tmp_path: Path, fault: Fault) -> None:
    emulator.faults.add(fault)
    files = [make_file(tmp_path / f"r{i}.bin", 1024 * 1024 + i, seed=i) for i in range(3)]
    result = run("upload", *map(str, files), "--json", "--progress", "none")
    assert result.code == 0, result.err
    records = [json.loads(line) for line in result.lines]
    for record, src in zip(records, files, strict=True):
        assert emulator.blob_sha256(PROVIDER, record["id"]) == sha256_file(src)
    assert len(emulator.store.blobs(PROVIDER)) == 3  # the failed attempt kept nothing


def test_transient_failure_after_all_retries(profile: str, emulator: Any, tmp_path: Path) -> None:
    emulator.faults.add(Fault(provider=PROVIDER, method="POST", path=UPLOAD_PATH, status=503, times=None))
    result = run("upload", str(make_file(tmp_path / "a.bin", 10)), "--progress", "none")
    assert result.code == 10


def test_environment_profile(emulator: Any, tmp_path: Path) -> None:
    env = {
        "TMPUP_PROVIDER": PROVIDER,
        "TMPUP_URL": f"{emulator.url}/{PROVIDER}",
        "TMPUP_USERNAME": emulator.credentials.et_username,
        "TMPUP_PASSWORD": emulator.credentials.et_password,
    }
    result = run("upload", str(make_file(tmp_path / "env.bin", 10)), "--json", "--debug", "--progress", "none", env=env)
    assert result.code == 0, result.err
    assert emulator.credentials.et_password not in result.out + result.err
    assert "Authorization: ****" in result.err


def test_profile_check(emulator: Any, config_path: Path) -> None:
    et_config(emulator, config_path)
    check = run("profiles", "check", "et")
    assert check.code == 0, check.err
    assert len(emulator.mounts[PROVIDER].sets) == 1  # an empty temporary set proves it
    et_config(emulator, config_path, url=f"{emulator.url}/qlik")  # another API
    assert run("profiles", "check", "et").code != 0
    et_config(emulator, config_path, username="nobody")
    assert run("profiles", "check", "et").code == 4


@pytest.mark.slow
def test_200_mib_multipart_mixed_upload_keeps_memory_flat(profile: str, emulator: Any, tmp_path: Path) -> None:
    big = make_file(tmp_path / "big.bin", 150 * 1024 * 1024)
    small = make_file(tmp_path / "small.bin", 50 * 1024 * 1024, seed=2)
    code, rss, _ = peak_rss_mib(["upload", str(big), str(small), "--progress", "none"])
    assert code == 0
    assert 10 < rss < 80, f"peak RSS {rss:.0f} MiB for a 200 MiB multipart/mixed upload"
    sums = {emulator.blob_sha256(PROVIDER, b.id) for b in emulator.store.blobs(PROVIDER)}
    assert sums == {sha256_file(big), sha256_file(small)}
