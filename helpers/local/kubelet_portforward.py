"""The kubelet's port-forward over WebSocket: `GET /portForward/<ns>/<pod>[/<uid>]?port=N` with Upgrade.

What `kubectl port-forward`'s API call becomes once the apiserver has found the pod's node: the
apiserver (1.20: an upgrade-aware proxy) passes the upgrade request to the kubelet with the ports as
`port=` and then copies bytes both ways. This module speaks the kubelet's WebSocket flavour
(Kubernetes' pkg/kubelet/cri/streaming/portforward/websocket.go), the one the `kubernetes`
Python client's `portforward` uses:

- subprotocol `v4.channel.k8s.io` (or the unversioned `channel.k8s.io`, or none): binary frames
  whose first byte is the channel. The base64 variants are refused (no client of ours asks);
- two channels per requested port, in order: data `2i`, error `2i+1`; each starts with a frame
  holding the port as two little-endian bytes;
- data from the client on channel `2i` goes to the pod's port, what the port answers comes back on
  `2i`; a connection the pod side cannot open is reported as text on `2i+1`.

SPDY (what `kubectl port-forward` speaks, also tunnelled in WebSocket by kubectl 1.31+) is not
served: the upgrade is refused with 400 and a message saying so.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import select
import socket
import struct
from typing import Callable, Optional
from urllib.parse import parse_qs

log = logging.getLogger("kubelet")

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Binary channel protocols only, newest first (the kubelet also serves base64.channel.k8s.io).
PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# (namespace, pod, port) -> "host:port" to connect to; raises PortForwardError.
PortResolver = Callable[[str, str, int], str]


class PortForwardError(Exception):
    """A request refused before the upgrade: HTTP status and the kubelet's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def ports_of(query: str) -> list[int]:
    """The ports of `?port=8080&port=9000` (the apiserver's form) or `?ports=8080,9000` (a client's)."""
    values = parse_qs(query)
    raw = [p for key in ("port", "ports") for v in values.get(key, []) for p in v.split(",") if p.strip()]
    if not raw:
        raise PortForwardError(400, "query parameter \"port\" is required")
    ports = []
    for item in raw:
        try:
            port = int(item)
        except ValueError:
            raise PortForwardError(400, f"unable to parse {item!r} as a port") from None
        if not 0 < port < 65536:
            raise PortForwardError(400, f"port {port} must be > 0 and < 65536")
        ports.append(port)
    return ports


def choose_protocol(header: str) -> Optional[str]:
    """The subprotocol to answer with: the first of PROTOCOLS the client offers, "" when it offers
    none (the kubelet's default binary protocol), None when it offers only ones not served here."""
    offered = [p.strip() for p in header.split(",") if p.strip()]
    if not offered:
        return ""
    return next((p for p in PROTOCOLS if p in offered), None)


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455, 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One unmasked, final frame (server to client)."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def parse_frames(buffer: bytearray) -> list[tuple[bool, int, bytes]]:
    """Complete frames at the start of `buffer` as (fin, opcode, unmasked payload); consumed bytes are removed."""
    out = []
    while len(buffer) >= 2:
        fin, opcode = bool(buffer[0] & 0x80), buffer[0] & 0x0F
        masked, size = bool(buffer[1] & 0x80), buffer[1] & 0x7F
        at = 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, at = struct.unpack("!H", buffer[2:4])[0], 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, at = struct.unpack("!Q", buffer[2:10])[0], 10
        mask = b""
        if masked:
            if len(buffer) < at + 4:
                break
            mask, at = bytes(buffer[at:at + 4]), at + 4
        if len(buffer) < at + size:
            break
        payload = bytes(buffer[at:at + size])
        if masked:
            payload = _unmask(payload, mask)
        del buffer[:at + size]
        out.append((fin, opcode, payload))
    return out


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask (as one big integer: fast for large payloads)."""
    size = len(payload)
    key = int.from_bytes((mask * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(size, "big")


def serve(conn: socket.socket, namespace: str, pod: str, ports: list[int], resolve: PortResolver,
          idle_timeout: float = 4 * 3600.0) -> None:
    """Forward between the upgraded connection `conn` and the pod's ports until either side ends."""
    targets: dict[int, Optional[socket.socket]] = {}
    for index, port in enumerate(ports):
        head = struct.pack("<H", port)
        conn.sendall(frame(bytes([2 * index]) + head) + frame(bytes([2 * index + 1]) + head))
        try:
            host, _, number = resolve(namespace, pod, port).rpartition(":")
            targets[index] = socket.create_connection((host, int(number)), timeout=5)
            targets[index].settimeout(None)
        except (PortForwardError, OSError) as exc:
            message = f"error forwarding port {port} to pod {pod}, uid : {exc}"
            log.info("%s/%s: %s", namespace, pod, message)
            conn.sendall(frame(bytes([2 * index + 1]) + message.encode()))
            targets[index] = None
    buffer, message = bytearray(), bytearray()
    try:
        while any(targets.values()):
            watched = [conn, *[t for t in targets.values() if t is not None]]
            ready, _, _ = select.select(watched, [], [], idle_timeout)
            if not ready:
                return
            for sock in ready:
                if sock is conn:
                    data = conn.recv(1 << 16)
                    pending = getattr(conn, "pending", lambda: 0)
                    while data and pending():
                        data += conn.recv(pending())
                    if not data:
                        return
                    buffer += data
                    for fin, opcode, payload in parse_frames(buffer):
                        if opcode == OP_CLOSE:
                            conn.sendall(frame(payload[:2], OP_CLOSE))
                            return
                        if opcode == OP_PING:
                            conn.sendall(frame(payload, OP_PONG))
                            continue
                        if opcode in (OP_BINARY, OP_TEXT, OP_CONT):
                            message += payload
                            if not fin:
                                continue
                            whole, message = bytes(message), bytearray()
                            if len(whole) < 2 or whole[0] % 2 or whole[0] // 2 not in targets:
                                continue  # an empty frame, or data on an error channel: ignored
                            target = targets[whole[0] // 2]
                            if target is not None:
                                target.sendall(whole[1:])
                else:
                    index = next(i for i, t in targets.items() if t is sock)
                    data = sock.recv(1 << 16)
                    if data:
                        conn.sendall(frame(bytes([2 * index]) + data))
                    else:
                        sock.close()
                        targets[index] = None
        conn.sendall(frame(struct.pack("!H", 1000), OP_CLOSE))
    except OSError as exc:
        log.debug("port-forward to %s/%s ended: %s", namespace, pod, exc)
    finally:
        for target in targets.values():
            if target is not None:
                target.close()
