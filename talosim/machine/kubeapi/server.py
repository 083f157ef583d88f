"""The emulated API server's HTTP side: TLS on loopback, client certificates signed by the
cluster's Kubernetes CA, the requests kubectl makes; it stops by itself after an idle period."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socketserver
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import nodes as N
from .. import pki
from ..state import State, read_json
from .objects import (
    API_RESOURCES,
    BUILTIN_NAMESPACES,
    NS_KEY,
    cluster_nodes,
    namespace_objects,
    node_object,
    pod_objects,
    table,
)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    # helpers
    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _authenticated(self) -> bool:
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            self._status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _cluster(self) -> dict[str, Any]:
        c = self.server.state.cluster(self.server.cid)
        assert c is not None
        return c

    def do_GET(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        state, cluster = self.server.state, self._cluster()
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, b"ok", "text/plain")
        if path == "/version":
            v = cluster.get("kubernetes_version") or "0.0.0"
            major, minor, _ = v.split(".")
            return self._send(
                200,
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": f"v{v}",
                    "gitCommit": "emulated",
                    "gitTreeState": "clean",
                    "buildDate": "2024-04-17T17:27:03Z",
                    "goVersion": "go1.22.2",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
            )
        if path == "/api":
            return self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": f"{self.server.host}:6443",
                        }
                    ],
                },
            )
        if path.startswith("/apis/apps/v1/namespaces/") and "/daemonsets/" in path:
            return self._daemonset(path.rsplit("/", 1)[1], state, cluster)
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self._send(200, API_RESOURCES)
        parts = path.split("/")[3:]  # after /api/v1
        if path.startswith("/api/v1/") and parts:
            return self._resource(parts, q, state, cluster)
        self._status(404, "NotFound", "the server could not find the requested resource")

    def _daemonset(self, name: str, state: State, cluster: dict[str, Any]) -> None:
        """The DaemonSet that owns some pods (what `kubectl drain --ignore-daemonsets` reads)."""
        owned = [
            pod
            for pod in pod_objects(state, cluster)
            for ref in pod["metadata"].get("ownerReferences") or []
            if ref["kind"] == "DaemonSet" and ref["name"] == name
        ]
        if not owned:
            return self._status(404, "NotFound", f'daemonsets.apps "{name}" not found')
        meta = {"name": name, "namespace": owned[0]["metadata"]["namespace"]}
        self._send(
            200,
            {
                "kind": "DaemonSet",
                "apiVersion": "apps/v1",
                "metadata": {**meta, "uid": hashlib.md5(name.encode()).hexdigest()},
                "spec": {"selector": {"matchLabels": owned[0]["metadata"]["labels"]}},
                "status": {"desiredNumberScheduled": len(owned), "numberReady": len(owned)},
            },
        )

    def _resource(
        self, parts: list[str], q: dict[str, str], state: State, cluster: dict[str, Any]
    ) -> None:
        kind, objs, name = None, [], None
        if parts[0] == "nodes":
            kind = "Node"
            objs = [node_object(n, cluster) for n in cluster_nodes(state, cluster)]
            name = parts[1] if len(parts) > 1 else None
        elif parts[0] == "namespaces" and len(parts) <= 2:
            kind = "Namespace"
            objs = namespace_objects(cluster)
            name = parts[1] if len(parts) > 1 else None
        elif parts[0] == "pods" or (
            parts[0] == "namespaces" and len(parts) >= 3 and parts[2] == "pods"
        ):
            kind = "Pod"
            ns = parts[1] if parts[0] == "namespaces" else None
            objs = [p for p in pod_objects(state, cluster) if ns in (None, "kube-system")]
            name = parts[3] if parts[0] == "namespaces" and len(parts) > 3 else None
        if kind is None:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        sel = q.get("fieldSelector", "")
        if sel.startswith("metadata.name="):
            objs = [o for o in objs if o["metadata"]["name"] == sel.split("=", 1)[1]]
        if sel.startswith("spec.nodeName=") and kind == "Pod":  # kubectl drain's pod list
            objs = [o for o in objs if o["spec"]["nodeName"] == sel.split("=", 1)[1]]
        if q.get("watch") in ("1", "true"):
            return self._watch(kind, parts, q)
        if name is not None:
            match = [o for o in objs if o["metadata"]["name"] == name]
            if not match:
                plural = {"Node": "nodes", "Pod": "pods", "Namespace": "namespaces"}[kind]
                return self._status(404, "NotFound", f'{plural} "{name}" not found')
            return self._send(200, table(kind, match) if self._wants_table() else match[0])
        if self._wants_table():
            return self._send(200, table(kind, objs))
        rv = str(max([int(o["metadata"]["resourceVersion"]) for o in objs] or [1]))
        return self._send(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv},
                "items": objs,
            },
        )

    def _watch(self, kind: str, parts: list[str], q: dict[str, str]) -> None:
        sel = q.get("fieldSelector", "")
        want = sel.split("=", 1)[1] if sel.startswith("metadata.name=") else None
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        seen: dict[str, str] = {}
        deadline = time.time() + timeout
        state = self.server.state
        try:
            while time.time() < deadline and not self.server.stopping:
                self.server.touch()
                cluster = self._cluster()
                objs = (
                    [node_object(n, cluster) for n in cluster_nodes(state, cluster)]
                    if kind == "Node"
                    else pod_objects(state, cluster)
                    if kind == "Pod"
                    else namespace_objects(cluster)
                )
                for o in objs:
                    name = o["metadata"]["name"]
                    if want and name != want:
                        continue
                    rv = o["metadata"]["resourceVersion"]
                    if seen.get(name) == rv:
                        continue
                    if name not in seen and int(rv) <= since:
                        seen[name] = rv
                        continue
                    typ = "MODIFIED" if since or name in seen else "ADDED"
                    seen[name] = rv
                    data = json.dumps({"type": typ, "object": o}).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def do_PATCH(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            patch = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self._status(400, "BadRequest", "invalid patch body")
        parts = urlsplit(self.path).path.rstrip("/").split("/")[3:]
        if len(parts) != 2 or parts[0] != "nodes":
            return self._status(405, "MethodNotAllowed", "the server does not allow this method")
        state = self.server.state
        with state.locked():
            cluster = self._cluster()
            target = next(
                (n for n in cluster_nodes(state, cluster) if N.hostname(n) == parts[1]), None
            )
            if target is None:
                return self._status(404, "NotFound", f'nodes "{parts[1]}" not found')
            spec = patch.get("spec") or {}
            if "unschedulable" in spec:
                target["unschedulable"] = bool(spec["unschedulable"])
                target["resource_version"] = target.get("resource_version", 1) + 1
                N.event(target, "cordon" if target["unschedulable"] else "uncordon")
                state.save_node(target)
        self._send(200, node_object(target, cluster))

    def do_POST(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        path = urlsplit(self.path).path.rstrip("/")
        if path != "/api/v1/namespaces":
            return self._status(
                405,
                "MethodNotAllowed",
                "emulated API server: read-only except node patch/delete and namespace create",
            )
        length = int(self.headers.get("Content-Length") or 0)
        try:
            name = json.loads(self.rfile.read(length) or b"{}")["metadata"]["name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return self._status(400, "BadRequest", "invalid namespace body")
        state = self.server.state
        with state.locked():
            cluster = self._cluster()
            data = cluster.get("etcd_data") or {"revision": 1, "keys": {}}
            if name in BUILTIN_NAMESPACES or NS_KEY + name in data["keys"]:
                return self._status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            data["keys"][NS_KEY + name] = json.dumps({"name": name})
            data["revision"] = int(data.get("revision", 1)) + 1
            cluster["etcd_data"] = data
            state.save_cluster(cluster)
        obj = next(o for o in namespace_objects(cluster) if o["metadata"]["name"] == name)
        self._send(201, obj)

    def do_DELETE(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        parts = urlsplit(self.path).path.rstrip("/").split("/")[3:]
        if len(parts) != 2 or parts[0] != "nodes":
            return self._status(405, "MethodNotAllowed", "the server does not allow this method")
        state, cluster = self.server.state, self._cluster()
        target = next((n for n in cluster_nodes(state, cluster) if N.hostname(n) == parts[1]), None)
        if target is None:
            return self._status(404, "NotFound", f'nodes "{parts[1]}" not found')
        # The object of a machine that still runs its kubelet is registered again at once, so
        # the Node (derived from the machine) stays; after a reset it is gone for good.
        self._send(200, node_object(target, cluster))

    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], state: State, cid: str, idle: float) -> None:
        super().__init__(addr, Handler)
        self.state, self.cid, self.idle = state, cid, idle
        self.host = addr[0]
        self.last = time.time()
        self.stopping = False

    def touch(self) -> None:
        self.last = time.time()

    def server_bind(self) -> None:
        # http.server.HTTPServer.server_bind resolves the bound address with socket.getfqdn, a
        # reverse-DNS (PTR) query that leaves the machine: talosim makes no network call at all.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def pidfile(state: State, cid: str) -> Path:
    return state.root / "kubeapi" / f"{cid}.json"


def serve(
    state: State, cid: str, host: str, port: int, ready: Callable[[], None] | None = None
) -> None:
    """Serve until idle or stopped; `ready` is called once the address is bound and listening."""
    # a fresh interpreter's handlers, however the server was started (forked from a call, or
    # `kubeapi serve` spawned by one): what the caller ignored (`nohup`'s SIGHUP, a script's
    # SIGINT) or handled was for the call, not for a detached server
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if not host.startswith("127."):
        raise SystemExit(
            f"refusing to bind {host}: the emulated API server listens on loopback only"
        )
    cluster = state.cluster(cid)
    if cluster is None or not cluster.get("k8s_ca"):
        raise SystemExit(f"no bootstrapped cluster {cid} in {state.root}")
    ca = cluster["k8s_ca"]
    crt, key = pki.issue(
        pki.unb64(ca["crt"]),
        pki.unb64(ca["key"]),
        kind="ec",
        cn="kube-apiserver",
        server=True,
        sans=[host, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"],
    )
    tmp = Path(tempfile.mkdtemp(prefix="talosim-kubeapi-"))
    try:
        os.chmod(tmp, 0o700)
        (tmp / "tls.crt").write_bytes(crt)
        (tmp / "tls.key").write_bytes(key)
        os.chmod(tmp / "tls.key", 0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        ctx.load_verify_locations(cadata=pki.unb64(ca["crt"]).decode())
        # Ask for a client certificate; one not signed by the cluster CA fails the handshake,
        # none at all gets 401 Unauthorized.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    idle = float(state.fleet()["settings"].get("kubeapi_idle_seconds", 600))
    server = Server((host, port), state, cid, idle)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)

    def reaper() -> None:
        while True:
            time.sleep(0.5)
            if time.time() - server.last > server.idle or not state.root.exists():
                server.stopping = True
                server.shutdown()
                return

    threading.Thread(target=reaper, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if ready is not None:
        ready()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError, OSError):
            info = read_json(pidfile(state, cid)) or {}
            if info.get("pid") == os.getpid():
                pidfile(state, cid).unlink()
