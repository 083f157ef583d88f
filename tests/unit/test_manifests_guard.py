"""The inline-manifest guard (workflows/manifests.py) and Secret redaction inside manifests."""

from __future__ import annotations

import pytest
import yaml

from talosprov.errors import TalosProvError
from talosprov.model import parse_cluster
from talosprov.redact import redact, redact_manifest_secrets
from talosprov.workflows import manifests
from tests.conftest import ROOT

CILIUM = """\
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: cilium-install
  namespace: kube-system
---
apiVersion: batch/v1
kind: Job
metadata:
  name: cilium-install
  namespace: kube-system
"""


def _config(*names: str) -> str:
    return yaml.safe_dump(
        {
            "machine": {"type": "controlplane"},
            "cluster": {"inlineManifests": [{"name": n, "contents": CILIUM} for n in names]},
        }
    )


def _cluster(talos: str) -> object:
    p = ROOT / "tests" / "cases" / "plan" / "path" / "cluster.yaml"
    text = p.read_text().replace("talos_version: v1.14.2", f"talos_version: {talos}")
    text = text.replace("kubernetes_version: 1.37.0", "kubernetes_version: 1.32.4")
    return parse_cluster(text, "c.yaml")


def test_dropped_and_renamed_manifests_name_the_objects_that_would_go() -> None:
    assert manifests.dropped(_config("cilium-install"), _config("cilium-install")) == {}
    assert manifests.dropped(_config("cilium-install"), _config()) == {
        "cilium-install": [
            "ServiceAccount kube-system/cilium-install",
            "Job kube-system/cilium-install",
        ]
    }
    # renamed: the old name is dropped, but its objects are still declared (nothing deleted)
    assert manifests.dropped(_config("cilium-install"), _config("cilium")) == {"cilium-install": []}


def test_guard_refuses_from_1_13_unless_allowed() -> None:
    c13 = _cluster("v1.13.9")
    with pytest.raises(TalosProvError) as e:
        manifests.guard(c13, _config("cilium-install"), _config(), allow=False, where="g.yaml")
    msg = str(e.value)
    assert "drops inline manifest(s) cilium-install" in msg
    assert "Job kube-system/cilium-install" in msg
    assert "--allow-manifest-removal" in msg
    gone = manifests.guard(c13, _config("cilium-install"), _config(), allow=True, where="g")
    assert list(gone) == ["cilium-install"]
    # before 1.13 upgrade-k8s does not prune: not refused
    c12 = _cluster("v1.12.11")
    assert manifests.guard(c12, _config("cilium-install"), _config(), allow=False, where="g")
    assert manifests.guard(c13, None, _config(), allow=False, where="g") == {}


def test_secret_objects_in_inline_manifests_are_redacted() -> None:
    secret = (
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hubble-tls\n  namespace: kube-system\n"
        "data:\n  tls.key: c2VjcmV0LWtleS1ieXRlcw==\nstringData:\n  token: plain-token-value\n"
    )
    cfg = yaml.safe_dump(
        {
            "cluster": {
                "inlineManifests": [
                    {"name": "s", "contents": CILIUM + "---\n" + secret},
                    {"name": "plain", "contents": CILIUM},
                ]
            }
        }
    )
    out = redact(cfg, {}, "generated/x/controlplane.yaml")
    assert "c2VjcmV0LWtleS1ieXRlcw==" not in out
    assert "plain-token-value" not in out
    assert "<redacted:secret kube-system/hubble-tls:tls.key>" in out
    assert "<redacted:secret kube-system/hubble-tls:token>" in out
    docs = yaml.safe_load(out)["cluster"]["inlineManifests"]
    assert docs[1]["contents"] == CILIUM  # manifests without a Secret are left as written
    assert redact_manifest_secrets(CILIUM) is None
