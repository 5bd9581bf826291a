"""The local control plane: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1.

The pair controller-runtime's envtest runs, plus the controller manager, because without it
namespaces get no `default` service account (every pod is rejected) and a deleted namespace never
finishes terminating. TLS with a self-signed certificate, one admin token, anonymous requests
refused, RBAC on. Binaries: KUBE_APISERVER / KUBE_CONTROLLER_MANAGER / ETCD, else the cache that
`scripts/build-kube.sh` fills, else PATH.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from helpers.core.config import cache_dir
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.local.stack import process

KUBE_VERSION = "v1.20.2"
CONTEXT = "mms-local"
NODE_NAME = "mms-local-node"  # the one Node; the local controller plays its kubelet
SERVICE_CIDR = "10.0.0.0/24"
# Controllers the stack needs; node, cloud, route, service and volume controllers stay off, and so does the
# endpoint controller: every pod here has the address 127.0.0.1, which an Endpoints object may not hold
# (loopback), so it could only fail and retry.
CONTROLLERS = ("namespace,serviceaccount,serviceaccount-token,garbagecollector,"
               "clusterrole-aggregation,resourcequota,deployment,replicaset")


def find_binary(env_var: str, name: str) -> str:
    """Lookup order: the env var > the build cache > PATH. Raises naming the fix."""
    explicit = os.environ.get(env_var)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise SetupError(_("{env_var}={explicit} is not an executable file").format(env_var=env_var, explicit=explicit),
                             _("point {env_var} at {name}, or unset it").format(env_var=env_var, name=name))
        return explicit
    cached = cache_dir() / "kube" / KUBE_VERSION / name
    if cached.exists():
        return str(cached)
    found = shutil.which(name)
    if found:
        return found
    raise SetupError(_("{name} not found ({env_var} unset, not in {parent}, not on PATH)").format(
                         name=name, env_var=env_var, parent=cached.parent),
                     _("run `make setup` (it builds {name} once, ~4 min), or set {env_var}").format(
                         name=name, env_var=env_var))


@dataclass(frozen=True)
class Paths:
    """Files of the control plane inside the stack's state folder."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def cert(self) -> Path:
        return self.pki / "apiserver.crt"

    @property
    def key(self) -> Path:
        return self.pki / "apiserver.key"

    @property
    def sa_key(self) -> Path:
        return self.pki / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.pki / "sa.pub"

    @property
    def tokens(self) -> Path:
        return self.pki / "tokens.csv"

    # The node's kubelet API (served by the local controller) and the apiserver's client cert for it:
    # both signed by one CA that only this stack holds, so only the apiserver can call the kubelet.
    @property
    def kubelet_ca(self) -> Path:
        return self.pki / "kubelet-ca.crt"

    @property
    def kubelet_ca_key(self) -> Path:
        return self.pki / "kubelet-ca.key"

    @property
    def kubelet_cert(self) -> Path:
        return self.pki / "kubelet.crt"

    @property
    def kubelet_key(self) -> Path:
        return self.pki / "kubelet.key"

    @property
    def kubelet_client_cert(self) -> Path:
        return self.pki / "apiserver-kubelet-client.crt"

    @property
    def kubelet_client_key(self) -> Path:
        return self.pki / "apiserver-kubelet-client.key"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def etcd_data(self) -> Path:
        return self.root / "data" / "etcd"


# P-256 keys, not RSA: a stack makes five key pairs at its first start (RSA-2048 took 1 CPU s of its 11),
# and every TLS handshake with the apiserver and the kubelet endpoint signs with one. The apiserver,
# the controller manager (service-account tokens, ES256) and every client here take either.
CURVE = ("-pkeyopt", "ec_paramgen_curve:P-256")
NEW_KEY = ("-newkey", "ec", *CURVE)


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SetupError(_("openssl {command} failed: {stderr}").format(command=args[0], stderr=result.stderr.strip()),
                         _("install openssl (make setup does)"))


def ensure_credentials(paths: Paths) -> str:
    """Create the certificate, service-account keys and admin token once (mode 0600). Returns the token."""
    paths.pki.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.pki, 0o700)
    if not paths.cert.exists():
        _openssl("req", "-x509", *NEW_KEY, "-nodes", "-days", "3650",
                 "-keyout", str(paths.key), "-out", str(paths.cert), "-subj", "/CN=kube-apiserver",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc")
    if not paths.sa_key.exists():
        _openssl("genpkey", "-algorithm", "EC", *CURVE, "-out", str(paths.sa_key))
        _openssl("pkey", "-in", str(paths.sa_key), "-pubout", "-out", str(paths.sa_pub))
    ensure_kubelet_certificates(paths)
    if not paths.tokens.exists():
        token = secrets.token_hex(24)
        fd = os.open(paths.tokens, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'{token},mms-admin,mms-admin,"system:masters"\n')
    for path in (paths.key, paths.sa_key, paths.tokens, paths.kubelet_ca_key, paths.kubelet_key,
                 paths.kubelet_client_key):
        os.chmod(path, 0o600)
    return paths.tokens.read_text().split(",", 1)[0]


def ensure_kubelet_certificates(paths: Paths) -> None:
    """A CA, the kubelet's serving cert (IP 127.0.0.1) and the apiserver's client cert, made once.

    The apiserver gets `--kubelet-client-certificate/key` and `--kubelet-certificate-authority`;
    the kubelet endpoint requires a client cert signed by the same CA, which only the apiserver has.
    """
    if not paths.kubelet_ca.exists():
        _openssl("req", "-x509", *NEW_KEY, "-nodes", "-days", "3650",
                 "-keyout", str(paths.kubelet_ca_key), "-out", str(paths.kubelet_ca),
                 "-subj", "/CN=mms-local-kubelet-ca")
    for cert, key, subject, extensions in (
            (paths.kubelet_cert, paths.kubelet_key, "/CN=system:node:" + NODE_NAME,
             f"subjectAltName=IP:127.0.0.1,DNS:{NODE_NAME}\nextendedKeyUsage=serverAuth"),
            (paths.kubelet_client_cert, paths.kubelet_client_key,
             "/O=system:masters/CN=kube-apiserver-kubelet-client", "extendedKeyUsage=clientAuth")):
        if cert.exists():
            continue
        csr = cert.with_suffix(".csr")
        ext = cert.with_suffix(".ext")
        _openssl("req", "-new", *NEW_KEY, "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", subject)
        ext.write_text(extensions + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(paths.kubelet_ca), "-CAkey", str(paths.kubelet_ca_key),
                 "-CAcreateserial", "-days", "3650", "-out", str(cert), "-extfile", str(ext))
        csr.unlink(missing_ok=True)
        ext.unlink(missing_ok=True)


def write_kubeconfig(paths: Paths, port: int, token: str) -> Path:
    """The kubeconfig `kubectl` and the `kubernetes` client use for the local stack (mode 0600)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": CONTEXT,
        "clusters": [{"name": CONTEXT, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "certificate-authority": str(paths.cert)}}],
        "users": [{"name": "mms-admin", "user": {"token": token}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": "mms-admin"}}],
    }
    fd = os.open(paths.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(config, out)
    return paths.kubeconfig


def etcd_healthy(client_port: int) -> bool:
    """etcd's own `/health` says so."""
    return requests.get(f"http://127.0.0.1:{client_port}/health", timeout=2).json().get("health") == "true"


def apiserver_ready(paths: Paths, port: int, token: str) -> bool:
    """kube-apiserver's `/readyz` answers 200 to the admin token over verified TLS."""
    answer = requests.get(f"https://127.0.0.1:{port}/readyz", verify=str(paths.cert),
                          headers={"Authorization": f"Bearer {token}"}, timeout=2)
    return answer.status_code == 200


def controller_manager_healthy(paths: Paths, port: int) -> bool:
    """kube-controller-manager's `/healthz` answers 200 (it serves the stack's certificate)."""
    return requests.get(f"https://127.0.0.1:{port}/healthz", verify=str(paths.cert), timeout=2).status_code == 200


def start_etcd(paths: Paths, client_port: int, peer_port: int, log: Path) -> process.ProcessRecord:
    """etcd with its data in the state folder, so applied manifests survive `down` + `up`."""
    binary = find_binary("ETCD", "etcd")
    paths.etcd_data.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.etcd_data, 0o700)
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    argv = [binary, "--name", "mms", "--data-dir", str(paths.etcd_data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"mms={peer}", "--log-level", "warn"]

    return process.start("etcd", argv, log, lambda: etcd_healthy(client_port), timeout=30,
                         ports={"client": client_port, "peer": peer_port})


def start_apiserver(paths: Paths, port: int, etcd_port: int, token: str, log: Path) -> process.ProcessRecord:
    """kube-apiserver with TLS, the static admin token, RBAC and no anonymous access."""
    binary = find_binary("KUBE_APISERVER", "kube-apiserver")
    argv = [binary,
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={port}",
            "--insecure-port=0",
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--tls-cert-file={paths.cert}", f"--tls-private-key-file={paths.key}",
            f"--token-auth-file={paths.tokens}",
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            f"--service-account-key-file={paths.sa_pub}",
            f"--service-account-signing-key-file={paths.sa_key}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cert-dir={paths.pki}", "--allow-privileged=true",
            # `kubectl logs` goes through the node's kubelet API (the local controller serves it).
            f"--kubelet-client-certificate={paths.kubelet_client_cert}",
            f"--kubelet-client-key={paths.kubelet_client_key}",
            f"--kubelet-certificate-authority={paths.kubelet_ca}",
            "--kubelet-preferred-address-types=InternalIP",
            # The `kubernetes` Service's Endpoints would hold 127.0.0.1, which validation refuses: the
            # default reconciler would fail and log it every 10 s. Nothing here reaches the apiserver
            # through that Service.
            "--endpoint-reconciler-type=none",
            # A watch cache per resource type (some sixty reflectors on etcd) is what lets a big cluster
            # serve thousands of watchers; here a handful of clients watch, and the caches alone cost
            # more CPU at rest than everything else the apiserver does (2.4 -> 1.1 CPU s a minute,
            # benchmarks/README.md "At rest"). Lists and watches then read etcd, with the same results.
            "--watch-cache=false",
            # API Priority and Fairness queues requests by tenant so that one cannot starve the others; a
            # stack has one tenant. Its filter, its periodic sampling and its bootstrap objects took about
            # a quarter of the apiserver's CPU during a walkthrough; without it the older max-in-flight
            # limits apply. The answers are the same.
            "--enable-priority-and-fairness=false",
            # Only the GA versions of the built-in API groups: nothing here uses a beta one (CronJob,
            # PodDisruptionBudget, EndpointSlice are not part of the walkthrough), and each served version
            # costs the apiserver handlers and OpenAPI at start (2 CPU s of a stack's 11) and the
            # namespace controller a list per type when a namespace goes.
            "--runtime-config=api/beta=false", "--v=1"]

    return process.start("kube-apiserver", argv, log, lambda: apiserver_ready(paths, port, token),
                         timeout=90, ports={"https": port})


def start_controller_manager(paths: Paths, port: int, log: Path) -> process.ProcessRecord:
    """kube-controller-manager: service accounts (and their token secrets) and namespace deletion."""
    binary = find_binary("KUBE_CONTROLLER_MANAGER", "kube-controller-manager")
    kubeconfig = str(paths.kubeconfig)
    argv = [binary, f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--port=0",
            f"--tls-cert-file={paths.cert}", f"--tls-private-key-file={paths.key}",
            f"--controllers={CONTROLLERS}", "--leader-elect=false",
            # No client CA or front-proxy here, so the cluster's extension-apiserver-authentication
            # ConfigMap never exists; looking it up would only fail and retry.
            "--authentication-skip-lookup=true",
            f"--service-account-private-key-file={paths.sa_key}", f"--root-ca-file={paths.cert}",
            "--use-service-account-credentials=false", "--v=1"]

    return process.start("kube-controller-manager", argv, log, lambda: controller_manager_healthy(paths, port),
                         timeout=60, ports={"https": port})


def api_client(kubeconfig: Path):  # -> kubernetes.client.ApiClient
    """A `kubernetes` ApiClient for the given kubeconfig file."""
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=str(kubeconfig))


def self_signed_cert(cert: Path, key: Path, common_name: str) -> bytes:
    """A certificate for a server on 127.0.0.1 (made once; mode 0600 key), which is its own CA. Returns its PEM."""
    cert.parent.mkdir(parents=True, exist_ok=True)
    if not (cert.exists() and key.exists()):
        _openssl("req", "-x509", *NEW_KEY, "-nodes", "-days", "3650",
                 "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}",
                 "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    os.chmod(key, 0o600)
    return cert.read_bytes()
