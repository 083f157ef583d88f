"""talosim's PKI uses the key types and token forms real Talos bundles have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from talosim.machine import pki


def test_bundle_key_types_match_talos() -> None:
    b = pki.gen_secrets_bundle((1, 7))
    keys = {name: pki.load_key(pki.unb64(c["key"])) for name, c in b["certs"].items()}
    assert isinstance(keys["os"], ed25519.Ed25519PrivateKey)
    for name in ("etcd", "k8s", "k8saggregator"):
        assert isinstance(keys[name], ec.EllipticCurvePrivateKey), name
        assert keys[name].curve.name == "secp256r1"
    assert isinstance(keys["k8sserviceaccount"], rsa.RSAPrivateKey)
    assert keys["k8sserviceaccount"].key_size == 4096
    for name in ("etcd", "k8s", "k8saggregator", "os"):
        cert = x509.load_pem_x509_certificate(pki.unb64(b["certs"][name]["crt"]))
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
        assert days >= 3649, name


def test_tokens_have_the_bootstrap_token_form() -> None:
    b = pki.gen_secrets_bundle((1, 7))
    for t in (b["secrets"]["bootstraptoken"], b["trustdinfo"]["token"]):
        assert re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", t)
    assert "secretboxencryptionsecret" in b["secrets"]


def test_old_contracts_get_aescbc_and_an_ec_service_account_key() -> None:
    b = pki.gen_secrets_bundle((1, 2))
    assert "aescbcencryptionsecret" in b["secrets"]
    key = pki.load_key(pki.unb64(b["certs"]["k8sserviceaccount"]["key"]))
    assert isinstance(key, ec.EllipticCurvePrivateKey)


def test_admin_client_is_signed_by_the_os_ca_only() -> None:
    a, other = pki.gen_secrets_bundle((1, 7)), pki.gen_secrets_bundle((1, 7))
    crt, _ = pki.admin_client(a)
    assert pki.organizations(crt) == ["os:admin"]
    assert pki.signed_by(crt, pki.unb64(a["certs"]["os"]["crt"]))
    assert not pki.signed_by(crt, pki.unb64(other["certs"]["os"]["crt"]))


def test_a_named_rsa_key_file_is_made_once_then_every_bundle_shares_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rsa.pem"
    monkeypatch.setenv("TALOSIM_RSA_KEY_FILE", str(path))
    first = pki.gen_secrets_bundle((1, 7))["certs"]["k8sserviceaccount"]["key"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert pki.unb64(first) == path.read_bytes()
    assert pki.gen_secrets_bundle((1, 7))["certs"]["k8sserviceaccount"]["key"] == first
    # unset (talosprov and the demo never set it): no file is read or written
    monkeypatch.delenv("TALOSIM_RSA_KEY_FILE")
    pem = path.read_bytes()
    path.unlink()
    monkeypatch.setattr(pki.rsa, "generate_private_key", lambda **_: pki.load_key(pem))
    assert pki.gen_secrets_bundle((1, 7))["certs"]["k8sserviceaccount"]["key"] == first
    assert not path.exists()
