"""`invoke certs` (expiry table, exit codes, --renew) and the expiry line of `invoke status`.

Dates are checked against `--at`, derived from the certificates themselves: no test depends on
the wall clock.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.emulated.e2e import FleetRepo

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("need_kubectl"),  # fails instead of skipping when CI=true
]
NAMES = ["talosconfig client", "kubeconfig client", "Talos CA", "Kubernetes CA", "etcd CA"]


def _ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _talosconfig_cert(repo: FleetRepo) -> x509.Certificate:
    cfg = yaml.safe_load((repo.root / ".state" / "talos-demo" / "talosconfig").read_text())
    return x509.load_pem_x509_certificate(base64.b64decode(cfg["contexts"]["talos-demo"]["crt"]))


def _kubeconfig_cert(repo: FleetRepo) -> x509.Certificate:
    cfg = yaml.safe_load((repo.root / ".state" / "talos-demo" / "kubeconfig").read_text())
    pem = cfg["users"][0]["user"]["client-certificate-data"]
    return x509.load_pem_x509_certificate(base64.b64decode(pem))


def _day(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d")


def _rows(out: str) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in json.loads(out[: out.rindex("]") + 1])}


def test_certs_lists_every_certificate_and_passes_when_none_expires_soon(
    installed: FleetRepo,
) -> None:
    issued = _talosconfig_cert(installed).not_valid_before_utc
    at = _day(issued + dt.timedelta(days=1))
    rows = _rows(_ok(installed.invoke("certs", "--cluster", "demo", "--at", at, "--json")))
    assert sorted(rows) == sorted(NAMES)
    assert {r["status"] for r in rows.values()} == {"ok"}
    table = _ok(installed.invoke("certs", "--cluster", "demo", "--at", at))
    assert table.splitlines()[0].split()[:2] == ["CERTIFICATE", "EXPIRES"]


def test_certs_exits_1_when_a_certificate_expires_within_warn_days(installed: FleetRepo) -> None:
    expires = _talosconfig_cert(installed).not_valid_after_utc
    at = _day(expires - dt.timedelta(days=10))
    r = installed.invoke("certs", "--cluster", "demo", "--at", at, "--json")
    assert r.returncode == 1
    rows = _rows(r.stdout)
    assert rows["talosconfig client"]["status"] == "expiring"
    assert int(rows["talosconfig client"]["days_left"]) in (9, 10)
    assert rows["Talos CA"]["status"] == "ok"  # CAs live ten years
    assert "expire within 30 days: " in r.stderr
    assert "talosconfig client" in r.stderr
    r = installed.invoke("certs", "--cluster", "demo", "--at", at, "--warn-days", "5")
    assert r.returncode == 0, r.stderr
    r = installed.invoke("certs", "--cluster", "demo", "--at", _day(expires + dt.timedelta(days=1)))
    assert r.returncode == 1
    assert "expired" in r.stdout


def test_certs_renew_replaces_both_client_configs_and_merges_them(installed: FleetRepo) -> None:
    old_tc, old_kc = _talosconfig_cert(installed), _kubeconfig_cert(installed)
    out = _ok(installed.invoke("certs", "--cluster", "demo", "--renew", "--dry-run"))
    assert "--output-types talosconfig" in out
    assert _talosconfig_cert(installed).serial_number == old_tc.serial_number
    _ok(installed.invoke("certs", "--cluster", "demo", "--renew"))
    new_tc, new_kc = _talosconfig_cert(installed), _kubeconfig_cert(installed)
    assert new_tc.serial_number != old_tc.serial_number
    assert new_kc.serial_number != old_kc.serial_number
    assert new_tc.not_valid_after_utc >= old_tc.not_valid_after_utc
    assert [
        a.value for a in new_tc.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    ] == ["os:admin"]
    for name in ("talosconfig", "kubeconfig"):
        assert (installed.root / ".state" / "talos-demo" / name).stat().st_mode & 0o777 == 0o600
    merged_tc = yaml.safe_load((installed.home / ".talos" / "config").read_text())
    crt = merged_tc["contexts"]["talos-demo"]["crt"]
    assert (
        x509.load_pem_x509_certificate(base64.b64decode(crt)).serial_number == new_tc.serial_number
    )
    merged_kc = yaml.safe_load((installed.home / ".kube" / "config").read_text())
    user = next(u for u in merged_kc["users"] if u["name"] == "admin@talos-demo")
    pem = base64.b64decode(user["user"]["client-certificate-data"])
    assert x509.load_pem_x509_certificate(pem).serial_number == new_kc.serial_number
    # the new credentials work: every node answers and is Ready
    st = _ok(installed.invoke("status", "--cluster", "demo", "--json"))
    assert {r["ready"] for r in json.loads(st[: st.rindex("]") + 1])} == {"yes"}


def test_status_names_the_nearest_expiry(installed: FleetRepo) -> None:
    out = _ok(installed.invoke("status", "--cluster", "demo"))
    line = next(line for line in out.splitlines() if "nearest certificate expiry" in line)
    assert "client expires " in line  # a client certificate (1 year) expires before the CAs
