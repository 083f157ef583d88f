"""`talosctl gen secrets --from-kubernetes-pki`: the CAs and service-account key of a kubeadm
PKI directory (typically /etc/kubernetes/pki), read with talosctl's error texts.

secrets.NewBundleFromKubernetesPKI (pkg/machinery/config/generate/secrets/bundle.go v1.14.0-rc.1
L65-152, v1.7.0 the same for the contracts talosim plays) reads ca.crt/ca.key, etcd/ca.crt|key,
front-proxy-ca.crt|key and sa.key, checks each parses (siderolabs/crypto x509
certificate_key.go GetKey/GetCert, key.go GetKey) and keeps the file bytes as they are.
"""

from __future__ import annotations

import base64
import os
import posixpath
import re
import stat

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .command import Fail

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.S)
# the key PEM types siderolabs/crypto parses (x509/x509.go PEMType*)
_KEY_TYPES = ("RSA PRIVATE KEY", "EC PRIVATE KEY", "ED25519 PRIVATE KEY", "PRIVATE KEY")


class PKIError(Fail):
    """A PKI directory talosctl refuses; the text is what it prints (without the wrapping)."""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PKIError(f"open {path}: {(e.strerror or str(e)).lower()}") from None


def _block(data: bytes) -> tuple[str, bytes] | None:
    """encoding/pem.Decode: the first PEM block, if any."""
    m = _PEM.search(data)
    if not m:
        return None
    body = b"".join(line for line in m[2].splitlines() if b":" not in line)
    try:
        return m[1].decode(), base64.b64decode(body, validate=False)
    except ValueError:
        return None


def _check_key(data: bytes, path: str, colon: bool) -> None:
    block = _block(data)
    if block is None:
        raise PKIError("failed to parse PEM block")
    kind, der = block
    if kind not in _KEY_TYPES:
        # GetKey of a certificate-and-key says `type: "X"`, of a bare key `type "X"`
        raise PKIError(f'unsupported key type{":" if colon else ""} "{kind}"')
    try:
        serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise Fail(f"emulator: talosctl's parse error for the key {path} is not modelled") from None


def _check_cert(data: bytes, path: str) -> None:
    block = _block(data)
    if block is None:
        raise PKIError("failed to parse PEM block")
    try:
        x509.load_der_x509_certificate(block[1])
    except ValueError:
        raise Fail(
            f"emulator: talosctl's parse error for the certificate {path} is not modelled"
        ) from None


def _pair(crt_path: str, key_path: str) -> dict[str, str]:
    # x509.NewCertificateAndKeyFromFiles reads both files first, then the key, then the cert
    # is parsed (secrets/utils.go validatePEMEncodedCertificateAndKey)
    crt, key = _read(crt_path), _read(key_path)
    _check_key(key, key_path, colon=True)
    _check_cert(crt, crt_path)
    return {"crt": base64.b64encode(crt).decode(), "key": base64.b64encode(key).decode()}


def read(pki_dir: str) -> dict[str, dict[str, str]]:
    """The bundle's `certs` entries the directory gives (k8s, etcd, k8saggregator,
    k8sserviceaccount)."""
    try:
        st = os.stat(pki_dir)
    except OSError as e:
        raise PKIError(f"stat {pki_dir}: {(e.strerror or str(e)).lower()}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PKIError(f'"{pki_dir}" is not a directory')
    j = posixpath.join
    k8s = _pair(j(pki_dir, "ca.crt"), j(pki_dir, "ca.key"))
    etcd = _pair(j(pki_dir, "etcd", "ca.crt"), j(pki_dir, "etcd", "ca.key"))
    agg = _pair(j(pki_dir, "front-proxy-ca.crt"), j(pki_dir, "front-proxy-ca.key"))
    sa = _read(j(pki_dir, "sa.key"))
    _check_key(sa, j(pki_dir, "sa.key"), colon=False)
    return {
        "etcd": etcd,
        "k8s": k8s,
        "k8saggregator": agg,
        "k8sserviceaccount": {"key": base64.b64encode(sa).decode()},
    }
