"""The signed bundle: every way of tampering with it must be refused before deserializing."""

import json
import pickle

import pytest
from sail_pipelines.integrity.bundle import (
    MODEL,
    SIGNATURE,
    BundleRejected,
    load_bundle,
    read_verified,
    write_bundle,
)
from sail_pipelines.integrity.signing import SigningKey

KEY = SigningKey(b"unit-test-key", dev=False)


class Bomb:
    """Unpickling this would run code: the loader must never get that far for an unsigned file."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('deserialized an unverified bundle')",))


@pytest.fixture
def bundle(tmp_path):
    dest = tmp_path / "bundle"
    write_bundle(dest, {MODEL: pickle.dumps({"w": 1}), "transformer.joblib": pickle.dumps({"t": 1})}, {"task": "regression"}, KEY)
    return dest


def test_round_trip(bundle):
    loaded = load_bundle(bundle, KEY)
    assert loaded.model == {"w": 1} and loaded.metadata == {"task": "regression"}
    assert len(loaded.bundle_id) == 16


def test_flipped_byte_is_refused(bundle):
    data = bytearray((bundle / MODEL).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / MODEL).write_bytes(bytes(data))
    with pytest.raises(BundleRejected, match="model.joblib does not match its signed hash"):
        load_bundle(bundle, KEY)


def test_swapped_malicious_pickle_is_never_loaded(bundle):
    (bundle / MODEL).write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(BundleRejected):
        load_bundle(bundle, KEY)


def test_re_signed_manifest_without_key_is_refused(bundle):
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"]["model.joblib"] = "0" * 64
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleRejected, match="signature does not match"):
        load_bundle(bundle, KEY)


def test_other_key_is_refused_with_key_ids(bundle):
    with pytest.raises(BundleRejected, match="signed with key id"):
        load_bundle(bundle, SigningKey(b"another-key", dev=False))


@pytest.mark.parametrize("change", ["extra", "missing", "no-signature", "garbled-signature"])
def test_structural_tampering_is_refused(bundle, change):
    if change == "extra":
        (bundle / "extra.py").write_text("print('hi')")
    elif change == "missing":
        (bundle / "transformer.joblib").unlink()
    elif change == "no-signature":
        (bundle / SIGNATURE).unlink()
    else:
        (bundle / SIGNATURE).write_text("{not json")
    with pytest.raises(BundleRejected):
        read_verified(bundle, KEY)


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleRejected, match="no model bundle"):
        load_bundle(tmp_path / "nope", KEY)


def test_failed_write_leaves_previous_bundle_and_no_partial(bundle, monkeypatch):
    before = (bundle / MODEL).read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("sail_pipelines.integrity.bundle._replace_dir", boom)
    with pytest.raises(OSError):
        write_bundle(bundle, {MODEL: b"new"}, {"task": "regression"}, KEY)
    assert (bundle / MODEL).read_bytes() == before
    assert [p.name for p in bundle.parent.iterdir()] == ["bundle"]
    load_bundle(bundle, KEY)


def test_key_never_in_repr():
    assert "unit-test-key" not in repr(KEY)
