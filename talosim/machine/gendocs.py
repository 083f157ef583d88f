"""`gen config` output for the version contracts after 1.11: the multi-document shapes.

machineconfig.generate builds the v1alpha1 document as contracts 1.8-1.11 have it; `shape` turns
it into what pkg/machinery/config/generate builds for the requested contract, following
VersionContract in pkg/machinery/config/contract.go (@v1.14.0-rc.1; "contract > X" there is
`contract >= X+1` here). Documents come out in the order init.go/worker.go append them, keys in
the Go types' field order (pkg/machinery/config/types/{network,cri,cluster,runtime,block,k8s}).
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from .machineconfig import pod_security_configuration

# Contract thresholds (pkg/machinery/config/contract.go @v1.14.0-rc.1).
MULTIDOC_NETWORK = (1, 12)  # MultidocNetworkConfigSupported, HideRBACAndKeyUsage, HideDisablePSP,
# GrubUseUKICmdlineDefault, !PopulateClusterSANsFromEndpoint: all Greater(TalosVersion1_11)
KUBESPAN_MULTIDOC = (1, 13)  # KubeSpanMultidocConfig: Greater(1_12); no empty machine.network
KUBERNETES_MULTIDOC = (1, 14)  # MultidocKubernetesConfigSupported, UnattendedInstallConfig,
# Discovery*MultidocConfig, HostDNSMultidocConfig, FilesystemTrim/WorkloadIsolation defaults

# constants.DefaultDiscoveryServiceEndpoint (pkg/machinery/constants/constants.go)
DISCOVERY_ENDPOINT = "https://discovery.talos.dev/"
# constants.DefaultFilesystemTrimInterval, as Go's time.Duration prints one week
TRIM_INTERVAL = "168h0m0s"
KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet"


def _doc(kind: str, **fields: Any) -> dict[str, Any]:
    return {"apiVersion": "v1alpha1", "kind": kind, **fields}


def _pem(b64: str) -> str:
    """The bundle keeps PEM base64-encoded; the new documents carry the PEM text itself."""
    return base64.b64decode(b64).decode() if b64 else ""


def shape(
    v1: dict[str, Any],
    kind: str,
    bundle: dict[str, Any],
    *,
    contract: tuple[int, int],
    opts: dict[str, Any],
    mirrors: dict[str, str],
) -> list[dict[str, Any]]:
    """The documents `gen config` writes for a node type under a version contract."""
    doc = copy.deepcopy(v1)
    machine, cluster = doc["machine"], doc["cluster"]
    if contract < MULTIDOC_NETWORK:
        if mirrors:
            machine["registries"] = {
                "mirrors": {host: {"endpoints": [url]} for host, url in mirrors.items()}
            }
        return [doc]
    if contract >= KUBERNETES_MULTIDOC:
        return _shape_114(doc, kind, bundle, opts, mirrors)
    # 1.12, 1.13 (generate/init.go, registry.go, network.go @v1.12.11 and @v1.13.9)
    machine["install"]["grubUseUKICmdline"] = True
    for hidden in ("rbac", "stableHostname", "apidCheckExtKeyUsage"):
        machine["features"].pop(hidden, None)
    if kind == "controlplane":
        api = cluster["apiServer"]
        api.pop("disablePodSecurityPolicy", None)
        sans = list(opts["additional_sans"])
        if sans:
            api["certSANs"] = sans
        else:
            api.pop("certSANs", None)
    kubespan = bool(machine.get("network", {}).get("kubespan"))
    if contract >= KUBESPAN_MULTIDOC:
        machine.pop("network", None)
    docs = [doc, *_registry_docs(mirrors), _doc("HostnameConfig", auto="stable")]
    if kubespan and contract >= KUBESPAN_MULTIDOC:
        docs.append(_doc("KubeSpanConfig", enabled=True))
    return docs


def _registry_docs(mirrors: dict[str, str]) -> list[dict[str, Any]]:
    # generate/registry.go: one RegistryMirrorConfig per host, sorted by kind then name
    return [
        _doc("RegistryMirrorConfig", name=host, endpoints=[{"url": url}])
        for host, url in sorted(mirrors.items())
    ]


def _shape_114(
    doc: dict[str, Any],
    kind: str,
    bundle: dict[str, Any],
    opts: dict[str, Any],
    mirrors: dict[str, str],
) -> list[dict[str, Any]]:
    """generate/init.go and worker.go @v1.14.0-rc.1: v1alpha1 keeps little; Kube* documents."""
    cp = kind == "controlplane"
    m, c = doc["machine"], doc["cluster"]
    certs = bundle["certs"]
    doc["persist"] = True
    doc["machine"] = {
        "type": m["type"],
        "token": m["token"],
        "ca": m["ca"],
        "certSANs": m["certSANs"],
        "features": {"diskQuotaSupport": True},
    }
    doc["cluster"] = {"token": c["token"]}
    if cp:
        doc["cluster"]["etcd"] = c["etcd"]
    endpoint = opts["endpoint"]
    k8s = opts["kubernetes_version"]
    docs: list[dict[str, Any]] = [doc]
    if opts["with_cluster_discovery"]:
        docs.append(_doc("DiscoveryServiceConfig", name="default", endpoint=DISCOVERY_ENDPOINT))
    docs.append(
        _doc(
            "DiscoveryIdentityConfig",
            clusterID=bundle["cluster"]["id"],
            clusterSecret=bundle["cluster"]["secret"],
        )
    )
    if opts["install_disk"]:
        installer = {"image": opts["install_image"]} if opts["install_image"] else {}
        docs.append(
            _doc(
                "UnattendedInstallConfig",
                installer=installer,
                provisioning={
                    "diskSelector": {"match": f'disk.dev_path == "{opts["install_disk"]}"'},
                    "wipe": False,
                },
            )
        )
    docs += [
        _doc("ResolverConfig", hostDNS={"enabled": True, "forwardKubeDNSToHost": True}),
        _doc("VolumeConfig", name="EPHEMERAL", mount={"secure": True}),
        _doc("FilesystemTrimConfig", interval=TRIM_INTERVAL),
        _doc("SecurityProfileConfig", workloadIsolation=True),
        *_registry_docs(mirrors),
        _doc("HostnameConfig", auto="stable"),
    ]
    if opts["with_kubespan"]:
        docs.append(_doc("KubeSpanConfig", enabled=True))
    # generate/kubernetes.go generateKubernetesUniversalConfigs
    node: dict[str, Any] = {"nodeIP": {}}
    if cp:
        node["labels"] = {
            "node-role.kubernetes.io/control-plane": "",
            "node.kubernetes.io/exclude-from-external-load-balancers": "",
        }
        node["taints"] = {"node-role.kubernetes.io/control-plane": "NoSchedule"}
    ca = (
        {"issuingCA": {"cert": _pem(certs["k8s"]["crt"]), "key": _pem(certs["k8s"]["key"])}}
        if cp
        else {"acceptedCAs": [_pem(certs["k8s"]["crt"])]}
    )
    docs += [
        _doc("KubeClusterConfig", clusterName=opts["cluster_name"], endpoint=endpoint),
        _doc("KubeNodeConfig", **node),
        _doc(
            "KubeletConfig",
            image=f"{KUBELET_IMAGE}:v{k8s}",
            config={},
            defaultRuntimeSeccompProfileEnabled=True,
        ),
        _doc(
            "KubeNetworkConfig",
            dnsDomain=opts["dns_domain"],
            podSubnets=["10.244.0.0/16"],
            serviceSubnets=["10.96.0.0/12"],
        ),
        _doc("KubeAPIServerCAConfig", **ca),
        _doc("KubePrismConfig", port=7445),
    ]
    if cp:
        docs += _controlplane_114(bundle, opts)
    return docs


def _controlplane_114(bundle: dict[str, Any], opts: dict[str, Any]) -> list[dict[str, Any]]:
    """generate/kubernetes.go generateKubernetesControlplaneConfigs @v1.14.0-rc.1."""
    certs, sec = bundle["certs"], bundle["secrets"]
    k8s = opts["kubernetes_version"]
    providers = []
    # the source names both providers "secretbox" (key2 for secretbox, key1 for the AES-CBC
    # secret of old bundles) so that regenerated configs keep the kube-apiserver's provider list
    if sec.get("secretboxencryptionsecret"):
        providers.append(
            {"secretbox": {"keys": [{"name": "key2", "secret": sec["secretboxencryptionsecret"]}]}}
        )
    if sec.get("aescbcencryptionsecret"):
        providers.append(
            {"secretbox": {"keys": [{"name": "key1", "secret": sec["aescbcencryptionsecret"]}]}}
        )
    api: dict[str, Any] = {"image": f"registry.k8s.io/kube-apiserver:v{k8s}"}
    if opts["additional_sans"]:
        api["certExtraSANs"] = list(opts["additional_sans"])
    pod_security = pod_security_configuration()
    return [
        _doc(
            "KubeAggregatorCAConfig",
            issuingCA={
                "cert": _pem(certs["k8saggregator"]["crt"]),
                "key": _pem(certs["k8saggregator"]["key"]),
            },
        ),
        _doc("KubeAdmissionControlConfig", name="PodSecurity", configuration=pod_security),
        _doc(
            "KubeAuditPolicyConfig",
            configuration={
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "rules": [{"level": "Metadata"}],
            },
        ),
        _doc(
            "KubeAuthenticationConfig",
            configuration={
                "anonymous": {
                    "conditions": [{"path": "/livez"}, {"path": "/readyz"}, {"path": "/healthz"}],
                    "enabled": True,
                },
                "jwt": [],
            },
        ),
        _doc("KubeAuthorizerConfig", name="node", type="Node"),
        _doc("KubeAuthorizerConfig", name="rbac", type="RBAC"),
        _doc(
            "KubeEtcdEncryptionConfig",
            config={"resources": [{"providers": providers, "resources": ["secrets"]}]},
        ),
        _doc(
            "KubeServiceAccountConfig",
            issuer={
                "privateKey": _pem(certs["k8sserviceaccount"]["key"]),
                "issuerURL": opts["endpoint"],
            },
        ),
        _doc("KubeAPIServerConfig", **api),
        _doc(
            "KubeControllerManagerConfig", image=f"registry.k8s.io/kube-controller-manager:v{k8s}"
        ),
        _doc("KubeSchedulerConfig", image=f"registry.k8s.io/kube-scheduler:v{k8s}", config={}),
        _doc("KubeProxyConfig", image=f"registry.k8s.io/kube-proxy:v{k8s}", config={}),
        _doc("KubeFlannelCNIConfig", backendType="vxlan", backendPort=4789),
        _doc("KubeCoreDNSConfig", enabled=True),
    ]


# -- reading multi-document configs back ---------------------------------------------------------
def _b64(pem: str) -> str:
    return base64.b64encode(pem.encode()).decode() if pem else ""


def _disk_of(match: str) -> str:
    """The disk of the selector gen config writes (`disk.dev_path == "/dev/sda"`), else ""."""
    prefix = 'disk.dev_path == "'
    return match[len(prefix) : -1] if match.startswith(prefix) and match.endswith('"') else ""


def fold_docs(docs: list[Any]) -> list[Any]:
    """The config with the v1alpha1 document seen as older Talos keeps it.

    From contract 1.14 install, Kubernetes and cluster identity live in their own documents; a
    node reads them from there (each wins only where the legacy field is unset, as the
    "... is already set in v1alpha1 config" conflicts keep them apart). talosim's node model
    reads the v1alpha1 paths, so the documents are folded into a copy of that document.
    """
    by_kind: dict[str, dict[str, Any]] = {}
    for d in docs:
        if isinstance(d, dict) and isinstance(d.get("kind"), str):
            by_kind.setdefault(d["kind"], d)
    if not any(k in by_kind for k in ("KubeClusterConfig", "UnattendedInstallConfig")):
        return docs
    out = []
    for d in docs:
        if isinstance(d, dict) and "machine" in d:
            d = _fold(copy.deepcopy(d), by_kind)
        out.append(d)
    return out


def _fold(v1: dict[str, Any], docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    m = v1.setdefault("machine", {}) or {}
    c = v1.setdefault("cluster", {}) or {}
    if (ui := docs.get("UnattendedInstallConfig")) and not m.get("install"):
        prov = ui.get("provisioning") or {}
        m["install"] = {
            "disk": _disk_of(str((prov.get("diskSelector") or {}).get("match") or "")),
            "image": (ui.get("installer") or {}).get("image", ""),
            "wipe": bool(prov.get("wipe")),
        }
    if (kubelet := docs.get("KubeletConfig")) and not (m.get("kubelet") or {}).get("image"):
        m.setdefault("kubelet", {})["image"] = kubelet.get("image", "")
    if ident := docs.get("DiscoveryIdentityConfig"):
        c.setdefault("id", ident.get("clusterID", ""))
        c.setdefault("secret", ident.get("clusterSecret", ""))
    if kc := docs.get("KubeClusterConfig"):
        c.setdefault("clusterName", kc.get("clusterName", ""))
        c.setdefault("controlPlane", {"endpoint": kc.get("endpoint", "")})
    if (ca := docs.get("KubeAPIServerCAConfig")) and not c.get("ca"):
        issuing = ca.get("issuingCA") or {}
        crt = issuing.get("cert") or next(iter(ca.get("acceptedCAs") or []), "")
        c["ca"] = {"crt": _b64(crt), "key": _b64(issuing.get("key", ""))}
    if (net := docs.get("KubeNetworkConfig")) and not c.get("network"):
        c["network"] = {
            k: net[k] for k in ("dnsDomain", "podSubnets", "serviceSubnets") if k in net
        }
        if "KubeFlannelCNIConfig" not in docs:
            c["network"]["cni"] = {"name": "none"}
    for kind, key in (
        ("KubeAPIServerConfig", "apiServer"),
        ("KubeControllerManagerConfig", "controllerManager"),
        ("KubeSchedulerConfig", "scheduler"),
        ("KubeProxyConfig", "proxy"),
    ):
        if (doc := docs.get(kind)) and not (c.get(key) or {}).get("image"):
            c.setdefault(key, {})["image"] = doc.get("image", "")
    if "DiscoveryServiceConfig" in docs and not c.get("discovery"):
        c["discovery"] = {"enabled": True}
    return v1
