"""The signed bundle: every way of tampering with it must be refused before deserializing.
Ed25519 (the default) and HMAC-SHA256 alike; a bundle forged with the public key, signed by another
pair, or signed with HMAC where Ed25519 is expected is refused, naming both key ids."""

import hashlib
import hmac
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
    dest = tmp_path / "bundle"
    write_bundle(dest, {MODEL: pickle.dumps({"w": 1}), "transformer.joblib": pickle.dumps({"t": 1})}, {"task": "regression"}, KEY)
    return dest


def test_round_trip_verifies_with_the_public_key_alone(bundle):
    loaded = load_bundle(bundle, PUBLIC)
    assert loaded.model == {"w": 1} and loaded.metadata == {"task": "regression"}
    assert len(loaded.bundle_id) == 16
    signature = json.loads((bundle / SIGNATURE).read_text())
    assert signature["algorithm"] == "Ed25519" and signature["key_id"] == PUBLIC.key_id == KEY.key_id
    assert not hasattr(PUBLIC, "sign")  # the public half has no way to sign


def test_hmac_scheme_round_trip(tmp_path):
    dest = tmp_path / "hmac"
    write_bundle(dest, {MODEL: pickle.dumps(1), "transformer.joblib": pickle.dumps(2)}, {"task": "regression"}, HMAC_KEY)
    assert load_bundle(dest, HMAC_KEY).model == 1
    assert json.loads((dest / SIGNATURE).read_text())["algorithm"] == "HMAC-SHA256"


def _forge(bundle, algorithm, key_id, signature):
    """Rewrite the model and re-sign the manifest as an attacker would."""
    (bundle / MODEL).write_bytes(pickle.dumps(Bomb()))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    manifest["files"][MODEL] = hashlib.sha256((bundle / MODEL).read_bytes()).hexdigest()
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    (bundle / "MANIFEST.json").write_bytes(manifest_bytes)
    (bundle / SIGNATURE).write_text(json.dumps({"algorithm": algorithm, "key_id": key_id,
                                                "signature": signature(manifest_bytes)}))


def test_forged_with_the_public_key_is_refused(bundle):
    """All a serving pod holds is the public key: used as an HMAC secret it signs nothing Ed25519 accepts."""
    public_text = PUBLIC.text().encode()
    _forge(bundle, "HMAC-SHA256", PUBLIC.key_id, lambda data: hmac.new(public_text, data, hashlib.sha256).hexdigest())
    with pytest.raises(BundleRejected) as refused:
        load_bundle(bundle, PUBLIC)
    assert f"signed with HMAC-SHA256 key id {PUBLIC.key_id}, this key is Ed25519 key id {PUBLIC.key_id}" in str(refused.value)


def test_forged_ed25519_claiming_the_key_id_is_refused(bundle):
    _forge(bundle, "Ed25519", PUBLIC.key_id, lambda data: "00" * 64)
    with pytest.raises(BundleRejected, match="signature does not match"):
        load_bundle(bundle, PUBLIC)


def test_another_key_pair_is_refused_naming_both_key_ids(bundle):
    other = generate()
    _forge(bundle, "Ed25519", other.key_id, other.sign)
    with pytest.raises(BundleRejected) as refused:
        load_bundle(bundle, PUBLIC)
    assert f"signed with Ed25519 key id {other.key_id}, this key is Ed25519 key id {PUBLIC.key_id}" in str(refused.value)


def test_hmac_signed_bundle_is_refused_where_ed25519_is_expected(tmp_path):
    dest = tmp_path / "hmac"
    write_bundle(dest, {MODEL: pickle.dumps(1), "transformer.joblib": pickle.dumps(2)}, {"task": "regression"}, HMAC_KEY)
    with pytest.raises(BundleRejected) as refused:
        load_bundle(dest, PUBLIC)
    assert f"signed with HMAC-SHA256 key id {HMAC_KEY.key_id}, this key is Ed25519 key id {PUBLIC.key_id}" in str(refused.value)


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
    with pytest.raises(BundleRejected, match="signed with Ed25519 key id"):
        load_bundle(bundle, generate().verify_key)


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
    assert "unit-test-key" not in repr(HMAC_KEY)
    body = "".join(KEY.text().splitlines()[1:-1])
    assert body not in repr(KEY) and KEY.key_id in repr(KEY)
