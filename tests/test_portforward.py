"""Port-forward through the real kube-apiserver 1.20 to the local kubelet, with the `kubernetes` client.

helpers.portforward opens the pod's `portforward` subresource (WebSocket `v4.channel.k8s.io`); the
apiserver hands the upgrade to the kubelet endpoint of the node the pod is bound to, which
connects to the pod's port (helpers/local/kubelet_portforward.py). Also the wire format itself,
without a stack.
"""
from __future__ import annotations

import concurrent.futures
import socket
import struct
import time

import pytest

from helpers import portforward, s3_access, storage
from helpers.errors import SetupError
from helpers.local import kubelet_portforward as wire


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


@pytest.mark.controlplane
def test_minio_through_a_port_forward_with_the_kubernetes_client(stack, kube) -> None:
    """The S3 server, reached only through the apiserver: list buckets with MinIO's own keys."""
    forward = portforward.forward_service(kube, "kubeflow", "minio-service", 9000)
    try:
        assert forward.command == f"kubectl port-forward svc/minio-service -n kubeflow {forward.local_port}:9000"
        assert forward.pod == "minio" and forward.port == 9000
        assert portforward.forward_service(kube, "kubeflow", "minio-service", 9000) is forward  # reused
        creds = s3_access.minio_credentials(kube)
        settings = storage.S3Settings(forward.address, creds.access_key, creds.secret_key)

        def buckets(_: int) -> list:
            return [b.name for b in storage.connect(settings).list_buckets()]

        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:  # connections in parallel
            answers = list(pool.map(buckets, range(8)))
        print(f"8 S3 calls through the port-forward in {time.monotonic() - start:.2f} s")
        assert all(a == answers[0] for a in answers)
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
