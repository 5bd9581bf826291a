"""The agent's S3 settings, read from its environment exactly as KServe's agent reads them.

KServe's credential builder turns the S3 Secret's annotations into the agent container's env
(pkg/credentials/s3/s3_secret.go), and the agent builds its S3 session from that env alone
(pkg/agent/storage/utils.go), in every release from KFServing 0.5.1 on:

- the endpoint is `AWS_ENDPOINT_URL` (`https://` + the s3-endpoint annotation, `http://` when
  s3-usehttps is "0"); without it the agent has no S3 at all;
- the region is `AWS_REGION` (KFServing 0.5.1) or `AWS_DEFAULT_REGION` (KServe 0.14+, whose
  s3_secret.go and agent utils.go both use that name), set only from the s3-region annotation;
  without it every request fails with `MissingRegion` (kserve/kserve#2140, #2151);
- buckets are addressed virtual-host style (`<bucket>.<endpoint host>`) unless
  `S3_USER_VIRTUAL_BUCKET` is "false" (the s3-usevirtualbucket annotation), and a MinIO Service
  name with a bucket in front does not resolve.

So the local agent fails where the real one fails. Host names resolve as in a pod: through the
Service objects (the local stack annotates each with the loopback address behind it), else DNS.

In a pod whose Istio proxy starts after the agent (the sidecar race, kserve/kserve#1370), iptables sends
the agent's outbound connections to the proxy's port 15001 before Envoy listens there, and the kernel
refuses them. The controller says for how long after the agent's start in OUTBOUND_REFUSED_ENV (counted
from `from_env`, once Python has imported what the Go binary has at once); until then `refused` makes a
real connection to a port where nothing listens and words its refusal as aws-sdk-go does, naming the
Service's cluster IP as a pod's DNS would have resolved it.
"""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Mapping, Optional, Union

from helpers.clients.storage import S3Settings, StorageError

Resolver = Callable[[str], str]
REGION_ENV = "AWS_REGION"  # KFServing 0.5.1's name; KServe 0.14+ reads AWS_DEFAULT_REGION
# Set by the local controller only (no release has it): for how many seconds after the agent's start the
# pod's Istio proxy refuses its outbound connections (the proxy starts after it).
OUTBOUND_REFUSED_ENV = "MMS_OUTBOUND_REFUSED_FOR"


@dataclass(frozen=True)
class AgentS3:
    """What the agent's env says about S3 (the keys never show in a repr)."""

    endpoint_url: str  # AWS_ENDPOINT_URL, e.g. http://minio-service.kubeflow:9000
    access_key: str
    secret_key: str
    region: str
    virtual_host: bool
    resolve: Optional[Resolver] = None
    region_env: str = REGION_ENV
    outbound_ready_at: float = 0.0  # before this moment the pod's Istio proxy refuses outbound connections
    cluster_address: Optional[Resolver] = None  # `host:port` -> `<cluster IP>:port`, as a pod's DNS answers

    def __repr__(self) -> str:
        return (f"AgentS3(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
                f"virtual_host={self.virtual_host}, credentials=<hidden>)")

    @property
    def endpoint(self) -> str:
        return self.endpoint_url.split("://", 1)[-1].rstrip("/")

    def warm_up(self) -> None:
        """Resolve the endpoint once, ahead of the first download: a new API client's first call
        costs ~0.4 s (TLS, lazy imports), which would otherwise land in the first model's download."""
        if self.resolve and self.endpoint_url:
            try:
                self.resolve(self.endpoint)
            except Exception:  # noqa: BLE001 - only a warm-up: the download resolves again and reports
                pass

    def for_bucket(self, bucket: str) -> S3Settings:
        """Settings to reach `bucket`, or the StorageError the real agent would meet."""
        if not self.endpoint_url:
            raise StorageError("the agent has no S3 endpoint (AWS_ENDPOINT_URL is not set)",
                               "annotate the S3 Secret with <api group>/s3-endpoint, list it under the "
                               "InferenceService's service account, then restart the server")
        if not self.region:
            raise StorageError(f"MissingRegion: could not find region configuration ({self.region_env} is not set)",
                               'add the annotation <api group>/s3-region: "us-east-1" to the S3 Secret, then '
                               "restart the server: the agent reads the region only from it")
        address = f"{bucket}.{self.endpoint}" if self.virtual_host else self.endpoint
        return S3Settings(self._reachable(address), self.access_key, self.secret_key,
                          secure=self.endpoint_url.startswith("https://"), region=self.region)

    def refused(self, url: str) -> Optional[str]:
        """While the pod's Istio proxy does not listen yet: aws-sdk-go's error for a request to `url`, after a
        real connection attempt the kernel refused; None once the proxy is up (or in a pod without one)."""
        if time.time() >= self.outbound_ready_at:
            return None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:
            closed.bind(("127.0.0.1", 0))  # bound, never listening: a connection to it is refused
            try:
                socket.create_connection(closed.getsockname(), timeout=1).close()
            except ConnectionRefusedError:
                pass
            else:  # pragma: no cover - a bound socket that does not listen accepts nothing
                return None
        host = url.split("://", 1)[-1].split("/", 1)[0]
        dialled = host
        if self.cluster_address:
            try:
                dialled = self.cluster_address(host)
            except Exception:  # noqa: BLE001 - only the wording: keep the host name
                dialled = host
        return f'RequestError: send request failed\ncaused by: Get "{url}": dial tcp {dialled}: connect: connection refused'

    def _reachable(self, address: str) -> str:
        resolved = self.resolve(address) if self.resolve else address
        if resolved != address:
            return resolved
        host = address.rsplit(":", 1)[0]
        try:
            socket.getaddrinfo(host, None)
        except socket.gaierror:
            hint = ('the agent addresses buckets virtual-host style: add the annotation '
                    '<api group>/s3-usevirtualbucket: "false" to the S3 Secret, then restart the server'
                    if self.virtual_host else "check the s3-endpoint annotation of the S3 Secret")
            raise StorageError(f"dial tcp: lookup {host}: no such host", hint) from None
        return address


def from_env(env: Mapping[str, str], resolve: Optional[Resolver] = None, region_env: str = REGION_ENV,
             cluster_address: Optional[Resolver] = None) -> AgentS3:
    """KServe's agent environment variables -> AgentS3; the region from `region_env` only."""
    try:
        refused_for = float(env.get(OUTBOUND_REFUSED_ENV) or 0)
    except ValueError:
        refused_for = 0.0
    ready_at = time.time() + refused_for if refused_for > 0 else 0.0
    return AgentS3(endpoint_url=env.get("AWS_ENDPOINT_URL", "").strip(),
                   access_key=env.get("AWS_ACCESS_KEY_ID", ""), secret_key=env.get("AWS_SECRET_ACCESS_KEY", ""),
                   region=env.get(region_env, "").strip(),
                   virtual_host=env.get("S3_USER_VIRTUAL_BUCKET", "").strip().lower() != "false",
                   resolve=resolve, region_env=region_env, outbound_ready_at=ready_at, cluster_address=cluster_address)


def bucket_settings(s3: Union[S3Settings, AgentS3], bucket: str) -> S3Settings:
    """Settings for `bucket`: an AgentS3 applies KServe's rules; plain S3Settings are used as given."""
    return s3.for_bucket(bucket) if isinstance(s3, AgentS3) else s3


@lru_cache(maxsize=1)
def _pod_api(kubeconfig: str):
    """One apiserver client per process for the lookups a pod's DNS would answer."""
    from kubernetes import config as kconfig

    return kconfig.new_client_from_config(config_file=kubeconfig)


def service_resolver() -> Optional[Resolver]:
    """Host names resolved through Service objects, as cluster DNS resolves them for a pod (the
    agent's and the storage initializer's S3 endpoint); None without KUBECONFIG."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return None
    from helpers.clients.k8s import resolve_address

    api = _pod_api(kubeconfig)  # now, not at the first lookup: the agent's clock (from_env) starts after this
    return lambda address: resolve_address(api, address)


def cluster_address_resolver() -> Optional[Resolver]:
    """`service.namespace:port` -> `<cluster IP>:port`, following ExternalName Services, as a pod's DNS
    answers it (only to word a refused connection as Go's dialer does); None without KUBECONFIG."""
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig:
        return None
    from helpers.clients.k8s import cluster_ip_address

    api = _pod_api(kubeconfig)
    return lambda address: cluster_ip_address(api, address)
