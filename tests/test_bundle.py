"""The signed bundle: every way of tampering with it must be refused before deserializing.
Ed25519 (the default) and HMAC-SHA256 alike; a bundle forged with the public key, signed by another
pair, or signed with HMAC where Ed25519 is expected is refused, naming both key ids."""

import errno
import hashlib
import hmac
import json
import os
import pickle
from pathlib import Path

import pytest

from pause_at_rename import kill_at_rename
from sail_pipelines.errors import SailError
from sail_pipelines.integrity.bundle import (
    MODEL,
    SIGNATURE,
    BundleRejected,
    load_bundle,
    read_verified,
    write_bundle,
)
from sail_pipelines.integrity.signing import HmacKey, generate

KEY = generate()  # Ed25519: the private key signs...
PUBLIC = KEY.verify_key  # ...and the public key alone verifies
HMAC_KEY = HmacKey(b"unit-test-key")


class Bomb:
    """Unpickling this would run code: the loader must never get that far for an unsigned file."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('deserialized an unverified bundle')",))


@pytest.fixture
def bundle(tmp_path):
    dest = tmp_path / "models" / "bundle"
    write_bundle(
        dest,
        {MODEL: pickle.dumps({"w": 1}), "transformer.joblib": pickle.dumps({"t": 1})},
        {"task": "regression"},
        KEY,
    )
    return dest


def test_round_trip_verifies_with_the_public_key_alone(bundle):
    loaded = load_bundle(bundle, PUBLIC)
    assert loaded.model == {"w": 1} and loaded.metadata == {"task": "regression"}
    assert len(loaded.bundle_id) == 16
    signature = json.loads((bundle / SIGNATURE).read_text())
    assert (
        signature["algorithm"] == "Ed25519" and signature["key_id"] == PUBLIC.key_id == KEY.key_id
    )
    assert not hasattr(PUBLIC, "sign")  # the public half has no way to sign


def test_hmac_scheme_round_trip(tmp_path):
    dest = tmp_path / "hmac"
    write_bundle(
        dest,
        {MODEL: pickle.dumps(1), "transformer.joblib": pickle.dumps(2)},
        {"task": "regression"},
        HMAC_KEY,
    )
    assert load_bundle(dest, HMAC_KEY).model == 1
    assert json.loads((dest / SIGNATURE).read_text())["algorithm"] == "HMAC-SHA256"


def _forge(bundle, algorithm, key_id, signature):
    """Rewrite the model and re-sign the manifest as an attacker would."""
    (bundle / MODEL).write_bytes(pickle.dumps(Bomb()))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"][MODEL] = hashlib.sha256((bundle / MODEL).read_bytes()).hexdigest()
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "MANIFEST.json").write_bytes(manifest_bytes)
    (bundle / SIGNATURE).write_text(
        json.dumps(
            {"algorithm": algorithm, "key_id": key_id, "signature": signature(manifest_bytes)}
        )
    )


def test_forged_with_the_public_key_is_refused(bundle):
    """All a serving pod holds is the public key: used as an HMAC secret it signs nothing Ed25519
    accepts."""
    public_text = PUBLIC.text().encode()
    _forge(
        bundle,
        "HMAC-SHA256",
        PUBLIC.key_id,
        lambda data: hmac.new(public_text, data, hashlib.sha256).hexdigest(),
    )
    with pytest.raises(BundleRejected) as refused:
        load_bundle(bundle, PUBLIC)
    assert (
        f"signed with HMAC-SHA256 key id {PUBLIC.key_id}, this key is Ed25519 key id "
        f"{PUBLIC.key_id}" in str(refused.value)
    )


def test_forged_ed25519_claiming_the_key_id_is_refused(bundle):
    _forge(bundle, "Ed25519", PUBLIC.key_id, lambda data: "00" * 64)
    with pytest.raises(BundleRejected, match="signature does not match"):
        load_bundle(bundle, PUBLIC)


def test_another_key_pair_is_refused_naming_both_key_ids(bundle):
    other = generate()
    _forge(bundle, "Ed25519", other.key_id, other.sign)
    with pytest.raises(BundleRejected) as refused:
        load_bundle(bundle, PUBLIC)
    assert (
        f"signed with Ed25519 key id {other.key_id}, this key is Ed25519 key id {PUBLIC.key_id}"
        in str(refused.value)
    )


def test_hmac_signed_bundle_is_refused_where_ed25519_is_expected(tmp_path):
    dest = tmp_path / "hmac"
    write_bundle(
        dest,
        {MODEL: pickle.dumps(1), "transformer.joblib": pickle.dumps(2)},
        {"task": "regression"},
        HMAC_KEY,
    )
    with pytest.raises(BundleRejected) as refused:
        load_bundle(dest, PUBLIC)
    assert (
        f"signed with HMAC-SHA256 key id {HMAC_KEY.key_id}, this key is Ed25519 key id "
        f"{PUBLIC.key_id}" in str(refused.value)
    )


def test_flipped_byte_is_refused(bundle):
    data = bytearray((bundle / MODEL).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / MODEL).write_bytes(bytes(data))
    with pytest.raises(BundleRejected, match="model.joblib does not match its signed hash"):
        load_bundle(bundle, KEY)


def test_swapped_malicious_pickle_is_never_loaded(bundle):
    (bundle / MODEL).write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(BundleRejected, match="model.joblib does not match its signed hash"):
        load_bundle(bundle, KEY)


def test_re_signed_manifest_without_key_is_refused(bundle):
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"]["model.joblib"] = "0" * 64
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleRejected, match="signature does not match"):
        load_bundle(bundle, KEY)


def test_other_key_is_refused_with_key_ids(bundle):
    with pytest.raises(BundleRejected, match="signed with Ed25519 key id"):
        load_bundle(bundle, generate().verify_key)


@pytest.mark.parametrize(
    "change, reason",
    [
        ("extra", "files differ from the signed manifest: extra.py"),
        ("missing", "files differ from the signed manifest: transformer.joblib"),
        ("no-signature", "is incomplete: no MANIFEST.json or SIGNATURE.json"),
        ("garbled-signature", "manifest or signature is unreadable"),
    ],
)
def test_structural_tampering_is_refused(bundle, change, reason):
    if change == "extra":
        (bundle / "extra.py").write_text("print('hi')")
    elif change == "missing":
        (bundle / "transformer.joblib").unlink()
    elif change == "no-signature":
        (bundle / SIGNATURE).unlink()
    else:
        (bundle / SIGNATURE).write_text("{not json")
    with pytest.raises(BundleRejected, match=reason):
        read_verified(bundle, KEY)


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleRejected, match="no model bundle"):
        load_bundle(tmp_path / "nope", KEY)


class FailingRenames:
    """os.rename (Path.rename calls it) failing for real from its Nth call on: the first
    `times` renames from there raise, later ones go through again."""

    def __init__(self, monkeypatch, nth: int, times: int = 1):
        self.calls, self.nth, self.times, self.real = [], nth, times, os.rename
        monkeypatch.setattr(os, "rename", self)

    def __call__(self, src, dst, *args, **kwargs):
        self.calls.append((Path(src).name, Path(dst).name))
        if self.nth <= len(self.calls) < self.nth + self.times:
            raise OSError(errno.EIO, "injected rename failure", str(src))
        return self.real(src, dst, *args, **kwargs)


NEW_FILES = {MODEL: pickle.dumps({"w": 2}), "transformer.joblib": pickle.dumps({"t": 2})}


def write_new(dest):
    return write_bundle(dest, NEW_FILES, {"task": "regression"}, KEY)


def only_the_bundle_left(dest):
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


def test_replacing_a_bundle_renames_twice(bundle, monkeypatch):
    """What the fault tests below fail: park the old bundle, move the new one in."""
    renames = FailingRenames(monkeypatch, nth=99)
    write_new(bundle)
    [(parked, old), (new, dest)] = renames.calls
    assert (parked, old[:12]) == ("bundle", ".bundle.old-")
    assert (new[:12], dest) == (".bundle.tmp-", "bundle")
    assert load_bundle(bundle, KEY).model == {"w": 2}
    only_the_bundle_left(bundle)


@pytest.mark.parametrize("nth", [1, 2])
def test_a_failed_rename_keeps_the_previous_bundle(bundle, monkeypatch, nth):
    before = load_bundle(bundle, KEY).bundle_id
    FailingRenames(monkeypatch, nth)
    kept = r"the previous bundle \(if any\) is kept"
    message = rf"could not write bundle {bundle}: injected rename failure; {kept}"
    with pytest.raises(SailError, match=message):
        write_new(bundle)
    assert load_bundle(bundle, KEY).bundle_id == before
    only_the_bundle_left(bundle)


def test_when_putting_the_old_bundle_back_fails_too_the_next_run_recovers_it(bundle, monkeypatch):
    """Renames 2 and 3 fail (the new bundle's, then the way back): the old one stays parked, and
    the next read or write puts it back."""
    before = load_bundle(bundle, KEY).bundle_id
    FailingRenames(monkeypatch, nth=2, times=2)
    with pytest.raises(SailError, match="injected rename failure"):
        write_new(bundle)
    assert [p.name[:12] for p in bundle.parent.iterdir()] == [".bundle.old-"]
    monkeypatch.undo()
    assert load_bundle(bundle, KEY).bundle_id == before  # the read put it back
    only_the_bundle_left(bundle)


def test_a_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    FailingRenames(monkeypatch, nth=1)
    with pytest.raises(SailError, match="could not write bundle .*injected rename failure"):
        write_new(tmp_path / "bundle")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_file_write_keeps_the_previous_bundle(bundle, monkeypatch):
    before = load_bundle(bundle, KEY).bundle_id

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(
        SailError,
        match=r"could not write bundle .*: No space left on device; "
        r"the previous bundle \(if any\) is kept",
    ):
        write_new(bundle)
    assert load_bundle(bundle, KEY).bundle_id == before
    only_the_bundle_left(bundle)


WRITER = """
import pickle, sys
from pathlib import Path
from sail_pipelines.integrity.bundle import MODEL, write_bundle
from sail_pipelines.integrity.signing import private_key
files = {MODEL: pickle.dumps({"w": 2}), "transformer.joblib": pickle.dumps({"t": 2})}
key = private_key(Path(sys.argv[2]).read_text(), "test")
write_bundle(Path(sys.argv[1]), files, {"task": "regression"}, key)
"""


def killed_at_rename(dest, tmp_path, source_glob: str) -> dict:
    """Write a bundle in another process, SIGKILLed just before it renames `source_glob`."""
    (tmp_path / "writer").mkdir()
    script = tmp_path / "writer" / "writer.py"
    script.write_text(WRITER)
    (tmp_path / "writer" / "signing.key").write_text(KEY.text())
    return kill_at_rename(
        [str(script), str(dest), str(tmp_path / "writer" / "signing.key")],
        source_glob,
        tmp_path / "writer",
    )


def test_a_writer_killed_between_the_two_renames_loses_nothing(bundle, tmp_path):
    before = load_bundle(bundle, KEY).bundle_id
    rename = killed_at_rename(bundle, tmp_path, ".bundle.tmp-*")
    # The instant of the kill: the old bundle parked, the new one complete beside it, none in place.
    assert Path(rename["dst"]) == bundle and not bundle.exists()
    [parked] = bundle.parent.glob(".bundle.old-*")
    assert load_bundle(parked, KEY).bundle_id == before
    assert load_bundle(Path(rename["src"]), KEY).model == {"w": 2}

    assert load_bundle(bundle, KEY).bundle_id == before  # the next run reads the previous bundle
    assert sorted(p.name[:12] for p in bundle.parent.iterdir()) == [".bundle.tmp-", "bundle"]
    write_new(bundle)  # and the next write clears what the killed one left
    assert load_bundle(bundle, KEY).model == {"w": 2}
    only_the_bundle_left(bundle)


def test_a_writer_killed_before_its_first_rename_changes_nothing(bundle, tmp_path):
    before = load_bundle(bundle, KEY).bundle_id
    rename = killed_at_rename(bundle, tmp_path, "bundle")
    assert Path(rename["src"]) == bundle and Path(rename["dst"]).name.startswith(".bundle.old-")
    assert load_bundle(bundle, KEY).bundle_id == before
    write_new(bundle)
    only_the_bundle_left(bundle)


def test_key_never_in_repr():
    assert "unit-test-key" not in repr(HMAC_KEY)
    body = "".join(KEY.text().splitlines()[1:-1])
    assert body not in repr(KEY) and KEY.key_id in repr(KEY)
