"""Real PKI for emulated clusters: the CA and key types Talos generates, tokens of the real form.

Key types follow pkg/machinery/config/generate/secrets (talos-contract.md §16): ED25519 for the
Talos OS CA, ECDSA P-256 for the Kubernetes, etcd and aggregator CAs, RSA-4096 for the
service-account key. Keys are PEM, base64-encoded in the bundle, as Talos stores them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import secrets as pysecrets
import string
import tempfile
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650  # 87600h
CERT_DAYS = 365

_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


def token() -> str:
    """A bootstrap/trustd token: [a-z0-9]{6}.[a-z0-9]{16}."""
    pick = pysecrets.choice
    return (
        "".join(pick(_TOKEN_ALPHABET) for _ in range(6))
        + "."
        + "".join(pick(_TOKEN_ALPHABET) for _ in range(16))
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def random_b64(n: int = 32, urlsafe: bool = False) -> str:
    raw = pysecrets.token_bytes(n)
    return (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(raw).decode()


def _key(kind: str) -> Any:
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return _rsa_4096()
    raise ValueError(kind)


def _rsa_4096() -> Any:
    """A new RSA-4096 key, or for test suites the one in TALOSIM_RSA_KEY_FILE.

    Generating one takes ~0.8 s of CPU, more than everything else in a `gen secrets`, and the
    end-to-end tests make dozens of bundles without ever reading this key's value: they name a
    file, and every bundle made with it set gets the key held there (generated and saved, 0600,
    by the first call). Never set by talosprov or the demo: unset, each bundle gets its own."""
    path = os.environ.get("TALOSIM_RSA_KEY_FILE")
    if path:
        try:
            with open(path, "rb") as f:
                return load_key(f.read(), ours=True)
        except FileNotFoundError:
            pass
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if path:
        # two first calls at once both write a whole key: the last rename wins, both are valid
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:  # mkstemp: 0600
                f.write(key_pem(key))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    return key


def key_pem(key: Any) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # Talos writes ED25519 keys with its own PEM type (crypto/x509 in siderolabs/crypto).
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        body = base64.encodebytes(der).decode().replace("\n", "")
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        kind = "ED25519 " + "PRIVATE KEY"
        text = f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"
        return text.encode()
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def load_key(pem: bytes, *, ours: bool = False) -> Any:
    talos_type = b"ED25519 " + b"PRIVATE KEY"
    if talos_type in pem:
        pem = pem.replace(talos_type, b"PRIVATE KEY")
    # `ours`: a key talosim saved itself (TALOSIM_RSA_KEY_FILE), read without OpenSSL's RSA
    # consistency check (primes and all: ~0.4 s of CPU for a 4096-bit key, half of generating
    # one); any other key, e.g. from an operator's bundle, is checked as talosctl checks it.
    return serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=ours
    )


def _sign_alg(key: Any) -> Any:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _name(cn: str | None = None, org: str | None = None) -> x509.Name:
    attrs = []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def new_ca(kind: str, *, org: str | None = None, cn: str | None = None) -> tuple[bytes, bytes]:
    """A self-signed CA: (certificate PEM, key PEM)."""
    key = _key(kind)
    name = _name(cn, org)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, _sign_alg(key))
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def issue(
    ca_crt: bytes,
    ca_key: bytes,
    *,
    kind: str,
    cn: str | None = None,
    org: str | None = None,
    client: bool = False,
    server: bool = False,
    sans: list[str] | None = None,
    days: int = CERT_DAYS,
) -> tuple[bytes, bytes]:
    """A leaf certificate signed by the CA: (certificate PEM, key PEM)."""
    ca_cert = x509.load_pem_x509_certificate(ca_crt)
    signer = load_key(ca_key)
    key = _key(kind)
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, org))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if usages:
        b = b.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        names: list[x509.GeneralName] = []
        for s in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                names.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = b.sign(signer, _sign_alg(signer))
    return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)


def signed_by(cert_pem: bytes, ca_pem: bytes) -> bool:
    """Whether cert_pem's signature verifies with ca_pem's public key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return False
    pub = ca.public_key()
    try:
        if isinstance(pub, ed25519.Ed25519PublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            algo = cert.signature_hash_algorithm
            assert algo is not None
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
        elif isinstance(pub, rsa.RSAPublicKey):
            algo = cert.signature_hash_algorithm
            assert algo is not None
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def not_after(cert_pem: bytes) -> dt.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def organizations(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def gen_secrets_bundle(
    contract: tuple[int, int],
    certs: dict[str, dict[str, str]] | None = None,
    bootstrap_token: str = "",
) -> dict[str, Any]:
    """A secrets bundle in the key order of `talosctl gen secrets` (contract §16).

    `certs` are entries already given (--from-kubernetes-pki) and `bootstrap_token` a token
    given as is: bundle.populate generates only what is missing, and a token only when it is
    empty, never checking its format (generate/secrets/bundle.go v1.14.0-rc.1 L260-353).
    """
    given = certs or {}

    def ca(name: str, kind: str, **subject: str) -> dict[str, str]:
        if name in given:
            return given[name]
        crt, key = new_ca(kind, **subject)
        return {"crt": b64(crt), "key": b64(key)}

    etcd = ca("etcd", "ec", org="etcd")
    k8s = ca("k8s", "ec", org="kubernetes")
    agg = ca("k8saggregator", "ec", cn="front-proxy")
    sa = given.get("k8sserviceaccount") or {
        "key": b64(key_pem(_key("ec" if contract <= (1, 6) else "rsa")))
    }
    os_ca = ca("os", "ed25519", org="talos")
    secrets_sec: dict[str, Any] = {"bootstraptoken": bootstrap_token or token()}
    if contract <= (1, 2):
        secrets_sec["aescbcencryptionsecret"] = random_b64()
    else:
        secrets_sec["secretboxencryptionsecret"] = random_b64()
    return {
        "cluster": {"id": random_b64(urlsafe=True), "secret": random_b64()},
        "secrets": secrets_sec,
        "trustdinfo": {"token": token()},
        "certs": {
            "etcd": etcd,
            "k8s": k8s,
            "k8saggregator": agg,
            "k8sserviceaccount": sa,
            "os": os_ca,
        },
    }


def admin_client(bundle: dict[str, Any], role: str = "os:admin") -> tuple[bytes, bytes]:
    """The talosconfig client certificate and key (ED25519, O=<role>, 1 year)."""
    os_ca = bundle["certs"]["os"]
    return issue(unb64(os_ca["crt"]), unb64(os_ca["key"]), kind="ed25519", org=role, client=True)
