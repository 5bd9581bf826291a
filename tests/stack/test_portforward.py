"""Port-forward through the real kube-apiserver 1.20 to the local kubelet: the `kubernetes` client and kubectl.

helpers.clients.portforward opens the pod's `portforward` subresource (WebSocket `v4.channel.k8s.io`);
`kubectl port-forward` speaks SPDY/3.1. The apiserver hands either upgrade to the kubelet endpoint
of the node the pod is bound to, which connects to the pod's port
(helpers/local/cluster/kubelet_portforward.py). Also the wire formats themselves, without a stack.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib

import pytest
import requests

from helpers.clients import portforward, storage
from helpers.core.errors import SetupError
from helpers.local.cluster import kubelet_portforward as wire
from helpers.steps.objectstore import kubeflow_minio


def test_frames_round_trip_masked_and_in_pieces() -> None:
    payloads = [b"\x00" + bytes(range(256)) * 300, b"\x02hello", b""]
    mask = b"\x11\x22\x33\x44"

    def client_frame(payload: bytes) -> bytes:  # as a client sends it: masked
        size = len(payload)
        head = bytes([0x82]) + (bytes([0x80 | size]) if size < 126 else
                                bytes([0x80 | 126]) + struct.pack("!H", size) if size < 1 << 16 else
                                bytes([0x80 | 127]) + struct.pack("!Q", size))
        return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    stream = b"".join(client_frame(p) for p in payloads)
    buffer, got = bytearray(), []
    for i in range(0, len(stream), 1000):  # arrives in pieces
        buffer += stream[i:i + 1000]
        got += wire.parse_frames(buffer)
    assert [p for _, _, p in got] == payloads and not buffer
    assert wire.parse_frames(bytearray(wire.frame(b"\x01abc"))) == [(True, wire.OP_BINARY, b"\x01abc")]


def test_request_checks() -> None:
    assert wire.ports_of("port=8080&port=9000") == [8080, 9000]
    assert wire.ports_of("ports=8080,9000") == [8080, 9000]
    for bad in ("", "port=http", "port=70000"):
        with pytest.raises(wire.PortForwardError):
            wire.ports_of(bad)
    assert wire.choose_protocol("v5.channel.k8s.io,v4.channel.k8s.io") == "v4.channel.k8s.io"
    assert wire.choose_protocol("") == ""
    assert wire.choose_protocol("base64.channel.k8s.io") is None
    # RFC 6455's example key
    assert wire.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_spdy_frames_headers_and_dictionary() -> None:
    # SPDY/3's dictionary, byte for byte (its sha256 as Go's x/net/spdy and moby/spdystream have it)
    assert hashlib.sha256(wire.SPDY_DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"
    headers = {"streamtype": "data", "port": "9000", "requestid": "0"}
    deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, zdict=wire.SPDY_DICTIONARY)
    inflate = zlib.decompressobj(zdict=wire.SPDY_DICTIONARY)
    for _ in range(2):  # one zlib stream per connection: the second block depends on the first
        block = deflate.compress(wire.header_block(headers)) + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert wire.parse_header_block(inflate.decompress(block)) == headers
    stream = bytearray(wire.spdy_control(wire.PING, 0, b"\x00\x00\x00\x01") + wire.spdy_data(3, b"abc", fin=True))
    assert wire.spdy_frames(stream[:10]) == []
    assert wire.spdy_frames(stream) == [("control", wire.PING, 0, b"\x00\x00\x00\x01"), ("data", 3, 1, b"abc")]
    assert stream == bytearray()


def _eight_mib_round_trip(address: str, kube) -> float:
    """Put and get back 8 MiB through `address` (MinIO, with its own keys); the seconds it took."""
    creds = kubeflow_minio.minio_credentials(kube)
    s3 = storage.connect(storage.S3Settings(address, creds.access_key, creds.secret_key))
    bucket = f"pf-{os.getpid()}"
    data = os.urandom(8 << 20)
    start = time.monotonic()
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
    s3.put_object(bucket, "blob", io.BytesIO(data), len(data))
    back = s3.get_object(bucket, "blob").read()
    took = time.monotonic() - start
    s3.remove_object(bucket, "blob")
    s3.remove_bucket(bucket)
    assert back == data
    return took


@pytest.mark.controlplane
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl on PATH")
def test_kubectl_port_forward_speaks_spdy_to_the_kubelet(stack, kube) -> None:
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    local = port.getsockname()[1]
    port.close()
    env = {**os.environ, "KUBECONFIG": str(stack.kubeconfig)}
    kubectl = subprocess.Popen(["kubectl", "port-forward", "svc/minio-service", "-n", "kubeflow", f"{local}:9000",
                                "--address", "127.0.0.1"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        assert kubectl.stdout.readline().startswith(f"Forwarding from 127.0.0.1:{local} -> 9000")
        took = _eight_mib_round_trip(f"127.0.0.1:{local}", kube)
        print(f"8 MiB up and back through kubectl port-forward (SPDY) in {took:.2f} s")
    finally:
        kubectl.terminate()
        out = kubectl.communicate(timeout=10)[0]
    assert "error" not in out.lower(), out


@pytest.mark.controlplane
def test_minio_through_a_port_forward_with_the_kubernetes_client(stack, kube) -> None:
    """The S3 server, reached only through the apiserver: list buckets with MinIO's own keys."""
    forward = portforward.forward_service(kube, "kubeflow", "minio-service", 9000)
    try:
        assert forward.command == f"kubectl port-forward svc/minio-service -n kubeflow {forward.local_port}:9000"
        assert forward.pod == "minio" and forward.port == 9000
        assert portforward.forward_service(kube, "kubeflow", "minio-service", 9000) is forward  # reused
        creds = kubeflow_minio.minio_credentials(kube)
        settings = storage.S3Settings(forward.address, creds.access_key, creds.secret_key)

        def buckets(_: int) -> list:
            return [b.name for b in storage.connect(settings).list_buckets()]

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # connections in parallel
            answers = list(pool.map(buckets, range(8)))
        print(f"8 S3 calls through the port-forward in {time.monotonic() - start:.2f} s")
        assert all(a == answers[0] for a in answers)
        took = _eight_mib_round_trip(forward.address, kube)
        print(f"8 MiB up and back through the kubernetes client's port-forward (WebSocket) in {took:.2f} s")
    finally:
        forward.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", forward.local_port), timeout=2).recv(1)


@pytest.mark.controlplane
def test_a_port_nothing_listens_on_closes_the_connection(stack, kube) -> None:
    forward = portforward.forward_pod(kube, "kubeflow", "minio", 1)
    try:
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=10) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(100) == b""
        time.sleep(0.2)
        assert forward.last_error.startswith("error forwarding port 1 to pod minio")  # the error channel
    finally:
        forward.stop()


@pytest.mark.controlplane
def test_a_missing_pod_or_selectorless_service_is_a_setup_error(stack, kube) -> None:
    with pytest.raises(SetupError, match="cannot port-forward to pod kubeflow/nope"):
        portforward.forward_pod(kube, "kubeflow", "nope", 9000)
    with pytest.raises(SetupError, match="kubernetes"):  # the apiserver's own Service has no selector
        portforward.forward_service(kube, "default", "kubernetes", 443)


@pytest.mark.controlplane
def test_without_a_load_balancer_address_the_notebook_forwards_to_the_gateway_pod(stack, kube, monkeypatch,
                                                                                   capsys) -> None:
    """target.gateway_forward, with MinIO's Service standing in for a gateway that has pods behind it."""
    from helpers.clients import target

    monkeypatch.setattr(target, "INGRESS_GATEWAYS", (("istio-system", "no-such-gateway"), ("kubeflow", "minio-service")))
    monkeypatch.setattr(target, "INGRESS_PORT", "http")
    forward = target.gateway_forward(kube)
    try:
        assert forward is not None and forward.url.startswith("http://127.0.0.1:")
        printed = capsys.readouterr().out
        assert f"kubectl port-forward svc/minio-service -n kubeflow {forward.local_port}:9000" in printed
        assert "<Error>" in requests.get(forward.url, timeout=10).text  # the S3 server answered, through the apiserver
    finally:
        portforward.stop_all()


@pytest.mark.controlplane
def test_out_of_cluster_minio_address_becomes_a_port_forward(stack, kube, monkeypatch) -> None:
    """OutOfCluster.service_address without MMS_S3_ENDPOINT: the ExternalName in a namespace is followed
    to kubeflow's minio-service, and a forward to its pod is started."""
    from helpers.clients import target

    monkeypatch.delenv("MMS_S3_ENDPOINT", raising=False)
    try:
        address = target.OutOfCluster().service_address(kube, "minio-service.kubeflow:9000", "default")
        assert address.startswith("127.0.0.1:")
        creds = kubeflow_minio.minio_credentials(kube)
        assert isinstance(storage.connect(storage.S3Settings(address, creds.access_key, creds.secret_key))
                          .list_buckets(), list)
        with pytest.raises(SetupError, match="a port-forward to it failed"):
            target.OutOfCluster().service_address(kube, "minio.example.com:9000", "default")
    finally:
        portforward.stop_all()
