"""Start and stop one throwaway control plane: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok, all on 127.0.0.1 ports chosen at start.

Each component authenticates with its own client certificate (the identities the bootstrap
RBAC roles are bound to), so authorisation is RBAC exactly as on GKE; the admin kubeconfig
written for tests is in system:masters.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import processes
from .pki import CertificateAuthority, CertPair, service_account_keys
from .stages import KWOK_NODE_ANNOTATION, write_stages

CONTEXT = "gpuctl-test"
SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"  # the `kubernetes` Service's ClusterIP: first address of SERVICE_CIDR
POD_CIDR = "10.64.0.0/14"  # what kwok hands out as pod IPs
ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT = 90.0


class ControlPlaneError(Exception):
    pass


@dataclass
class Endpoint:
    """A component's health URL and what to check it with."""
    url: str
    ca: Path | None = None
    client: CertPair | None = None


def _kubeconfig(path: Path, server: str, ca: Path, client: CertPair, user: str) -> Path:
    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": user, "user": {"client-certificate-data": b64(client.cert),
                                          "client-key-data": b64(client.key)}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
    }))
    path.chmod(0o600)
    return path


def _healthy(endpoint: Endpoint) -> bool:
    context = None
    if endpoint.url.startswith("https"):
        context = ssl.create_default_context(cafile=str(endpoint.ca))
        if endpoint.client:
            context.load_cert_chain(str(endpoint.client.cert), str(endpoint.client.key))
    try:
        with urllib.request.urlopen(endpoint.url, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False


class ControlPlane:
    """`with ControlPlane(bin_dir) as cp:` runs a control plane; leaving the block (or a failed
    start) kills every process and removes the run directory."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.run_dir: Path | None = None
        self.kubeconfig: Path | None = None
        self.server = ""
        self.ca_cert: Path | None = None
        self._processes: list[processes.ManagedProcess] = []

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    def __enter__(self) -> "ControlPlane":
        processes.sweep_leftover_runs()
        self.run_dir = processes.new_run_dir()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        # Reverse order, and straight SIGKILL: the state is thrown away, so a graceful
        # shutdown would only make every test session slower to end.
        for process in reversed(self._processes):
            process.stop(grace=0)
        self._processes.clear()
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- start ---------------------------------------------------------------------------

    def _start(self) -> None:
        pki_dir = self.run_dir / "pki"
        pki_dir.mkdir()
        ca = CertificateAuthority(pki_dir)
        self.ca_cert = ca.pair.cert
        sa = service_account_keys(pki_dir)
        ports = {name: processes.free_port() for name in
                 ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok")}
        self.server = f"https://127.0.0.1:{ports['apiserver']}"

        def serving(name: str) -> CertPair:
            return ca.issue(f"{name}-serving", name, server_names=("localhost",), server_ips=("127.0.0.1",))

        def kubeconfig(name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
            client = ca.issue(f"{name}-client", user, organizations=groups)
            return _kubeconfig(self.run_dir / f"{name}.kubeconfig", self.server, ca.pair.cert, client, user)

        admin_client = ca.issue("admin-client", "gpuctl-test-admin", organizations=("system:masters",))
        self.kubeconfig = _kubeconfig(self.run_dir / "admin.kubeconfig", self.server, ca.pair.cert,
                                      admin_client, "gpuctl-test-admin")

        self._launch("etcd", self._etcd_args(ports))
        self._wait_healthy({"etcd": Endpoint(f"http://127.0.0.1:{ports['etcd']}/health")})

        apiserver_cert = ca.issue("apiserver-serving", "kube-apiserver",
                                  server_names=("localhost", "kubernetes", "kubernetes.default",
                                                "kubernetes.default.svc",
                                                "kubernetes.default.svc.cluster.local"),
                                  server_ips=("127.0.0.1", SERVICE_IP))
        self._launch("kube-apiserver", self._apiserver_args(ports, ca.pair, apiserver_cert, sa))
        # The others start once /readyz says the bootstrap RBAC roles exist: the
        # controller-manager exits at once when it is refused its configmap.
        self._wait_healthy({"kube-apiserver": Endpoint(f"{self.server}/readyz", ca.pair.cert, admin_client)})
        self._launch("kube-controller-manager", self._controller_manager_args(
            ports, ca.pair, sa, serving("kube-controller-manager"),
            kubeconfig("kube-controller-manager", "system:kube-controller-manager")))
        self._launch("kube-scheduler", self._scheduler_args(
            ports, serving("kube-scheduler"), kubeconfig("kube-scheduler", "system:kube-scheduler")))
        # kwok plays every kubelet at once; system:masters spares it a hand-written ClusterRole.
        self._launch("kwok", self._kwok_args(
            ports, kubeconfig("kwok", "kwok-controller", ("system:masters",)),
            write_stages(self.run_dir / "kwok-stages.yaml")),
            env={"HOME": str(self.run_dir), "KWOK_WORKDIR": str(self.run_dir / "kwok")})

        self._wait_healthy({
            "kube-controller-manager": Endpoint(f"https://127.0.0.1:{ports['controller-manager']}/healthz", ca.pair.cert),
            "kube-scheduler": Endpoint(f"https://127.0.0.1:{ports['scheduler']}/healthz", ca.pair.cert),
            "kwok": Endpoint(f"http://127.0.0.1:{ports['kwok']}/healthz"),
        })

    def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        argv = [str(self.bin_dir / name), *args]
        self._processes.append(processes.ManagedProcess(self.run_dir, name, argv, env))

    def _wait_healthy(self, endpoints: dict[str, Endpoint]) -> None:
        pending = dict(endpoints)
        deadline = time.monotonic() + START_TIMEOUT
        while pending:
            for process in self._processes:
                if process.exited() is not None:
                    raise ControlPlaneError(
                        f"{process.name} exited with {process.exited()} while starting; "
                        f"last lines of its log:\n{process.log_tail()}")
            pending = {name: ep for name, ep in pending.items() if not _healthy(ep)}
            if pending and time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name}\n{p.log_tail(15)}" for p in self._processes
                                  if p.name in pending)
                raise ControlPlaneError(
                    f"not healthy after {START_TIMEOUT:.0f}s: {', '.join(pending)}\n{tails}")
            if pending:
                time.sleep(0.1)

    # --- command lines -------------------------------------------------------------------

    def _etcd_args(self, ports: dict[str, int]) -> list[str]:
        client = f"http://127.0.0.1:{ports['etcd']}"
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        return [
            "--name=default", f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            # A test cluster holds a few hundred objects; fsync buys nothing for throwaway data.
            "--quota-backend-bytes=268435456", "--unsafe-no-fsync", "--log-level=warn",
        ]

    def _apiserver_args(self, ports, ca: CertPair, serving: CertPair, sa: CertPair) -> list[str]:
        return [
            f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            f"--service-account-key-file={sa.cert}", f"--service-account-signing-key-file={sa.key}",
            f"--service-account-issuer={ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            # On top of the defaults, as GKE does: pods requesting nvidia.com/gpu get the
            # toleration for the GPU nodes' nvidia.com/gpu taint.
            "--enable-admission-plugins=ExtendedResourceToleration",
            "--allow-privileged=true", "--profiling=false",
        ]

    def _controller_manager_args(self, ports, ca: CertPair, sa: CertPair, serving: CertPair,
                                 kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['controller-manager']}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            # Each controller runs as its own service account, so RBAC applies to them too.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={sa.key}", f"--root-ca-file={ca.cert}",
            f"--cluster-signing-cert-file={ca.cert}", f"--cluster-signing-key-file={ca.key}",
            "--leader-elect=false", "--profiling=false",
            "--kube-api-qps=100", "--kube-api-burst=200",
            # kwok renews node leases from this same loaded 2-core machine; a late renewal must
            # not mark a GPU node NotReady (and leave GPU pods unschedulable) mid-test.
            "--node-monitor-grace-period=10m",
        ]

    def _scheduler_args(self, ports, serving: CertPair, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            "--leader-elect=false", "--profiling=false",
        ]

    def _kwok_args(self, ports, kubeconfig: Path, stages: Path) -> list[str]:
        key, value = KWOK_NODE_ANNOTATION
        return [
            f"--kubeconfig={kubeconfig}", f"--config={stages}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={key}={value}",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            "--node-ip=10.128.0.2", f"--cidr={POD_CIDR}",
        ]
