"""The kubelet's port-forward: `/portForward/<ns>/<pod>[/<uid>]` upgraded to WebSocket or to SPDY/3.1.

What a pod's `portforward` subresource becomes once the apiserver has found the pod's node: the
apiserver (1.20: an upgrade-aware proxy) passes the upgrade request to the kubelet and then copies
bytes both ways. Both of the kubelet's flavours are spoken here (Kubernetes'
pkg/kubelet/cri/streaming/portforward/websocket.go and httpstream.go):

- **WebSocket**, what the `kubernetes` Python client's `portforward` uses: subprotocol
  `v4.channel.k8s.io` (or `channel.k8s.io`, or none); binary frames whose first byte is the
  channel; two channels per port of `?port=` (data `2i`, error `2i+1`), each opened with a frame
  holding the port as two little-endian bytes; a port that cannot be reached is reported as text on
  its error channel. The base64 variants are refused (no client of ours asks).
- **SPDY/3.1** with `X-Stream-Protocol-Version: portforward.k8s.io`, what `kubectl port-forward`
  uses (kubectl 1.31+ first tries SPDY tunnelled in WebSocket, which a 1.20 cluster does not
  have, and falls back to this): per local connection the client opens an `error` and a `data`
  stream with the same `requestid` and the `port` header; the server answers each SYN_STREAM
  with a SYN_REPLY, copies the data stream to and from the pod's port, writes any failure to the
  error stream, and ends both with FIN. Header blocks are zlib-compressed with SPDY/3's
  dictionary; PINGs are echoed; as in the spdystream library both ends use, no flow control.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import select
import socket
import struct
import zlib
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



def _receive(conn: socket.socket) -> bytes:
    """What the connection has now: one read, plus whatever TLS already decrypted behind it
    (select() does not see bytes buffered inside the SSL object)."""
    data = conn.recv(1 << 16)
    pending = getattr(conn, "pending", lambda: 0)
    while data and pending():
        data += conn.recv(pending())
    return data

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
                    data = _receive(conn)
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


# --- SPDY/3.1 ------------------------------------------------------------------------------------
SPDY_UPGRADE = "SPDY/3.1"
PORTFORWARD_PROTOCOL = "portforward.k8s.io"
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
# The zlib dictionary of SPDY/3's header compression (draft 3, 2.6.10.1): these words, each with a
# 4-byte big-endian length, then the tail as it is. tests/stack/test_portforward.py checks its sha256.
_DICT_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public",
    "set-cookie", "keep-alive", "origin")
_DICT_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
SPDY_DICTIONARY = b"".join(struct.pack("!I", len(w)) + w.encode() for w in _DICT_WORDS) + _DICT_TAIL.encode()


def spdy_control(kind: int, flags: int, body: bytes) -> bytes:
    """A SPDY/3 control frame."""
    return struct.pack("!HHI", 0x8003, kind, (flags << 24) | len(body)) + body


def spdy_data(stream: int, data: bytes, fin: bool = False) -> bytes:
    """A SPDY data frame on `stream`."""
    return struct.pack("!II", stream & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def spdy_frames(buffer: bytearray) -> list[tuple]:
    """Complete frames at the start of `buffer`, removed from it: ("control", type, flags, body) or
    ("data", stream id, flags, payload)."""
    out = []
    while len(buffer) >= 8:
        first, second = struct.unpack("!II", buffer[:8])
        flags, size = second >> 24, second & 0xFFFFFF
        if len(buffer) < 8 + size:
            break
        body = bytes(buffer[8:8 + size])
        del buffer[:8 + size]
        if first & 0x80000000:
            out.append(("control", first & 0xFFFF, flags, body))
        else:
            out.append(("data", first & 0x7FFFFFFF, flags, body))
    return out


def header_block(headers: dict[str, str]) -> bytes:
    """SPDY/3's uncompressed name/value block."""
    out = struct.pack("!I", len(headers))
    for name, value in headers.items():
        out += struct.pack("!I", len(name)) + name.encode() + struct.pack("!I", len(value)) + value.encode()
    return out


def parse_header_block(raw: bytes) -> dict[str, str]:
    """Names (lower case) and values of an uncompressed name/value block."""
    count, at, found = struct.unpack("!I", raw[:4])[0], 4, {}
    for _ in range(count):
        size = struct.unpack("!I", raw[at:at + 4])[0]
        name, at = raw[at + 4:at + 4 + size].decode(), at + 4 + size
        size = struct.unpack("!I", raw[at:at + 4])[0]
        found[name.lower()], at = raw[at + 4:at + 4 + size].decode(), at + 4 + size
    return found


class _Pair:
    """The error and data streams of one forwarded connection (same `requestid`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.data: Optional[int] = None
        self.error: Optional[int] = None
        self.sock: Optional[socket.socket] = None


def serve_spdy(conn: socket.socket, namespace: str, pod: str, resolve: PortResolver,
               idle_timeout: float = 4 * 3600.0) -> None:
    """Serve one upgraded SPDY/3.1 connection: any number of forwarded connections until the client goes."""
    inflate = zlib.decompressobj(zdict=SPDY_DICTIONARY)
    deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, zdict=SPDY_DICTIONARY)
    buffer = bytearray()
    pairs: dict[str, _Pair] = {}
    of_stream: dict[int, tuple[str, str]] = {}  # stream id -> (requestid, "data" | "error")

    def reply(stream: int) -> None:
        block = deflate.compress(header_block({})) + deflate.flush(zlib.Z_SYNC_FLUSH)
        conn.sendall(spdy_control(SYN_REPLY, 0, struct.pack("!I", stream) + block))

    def finish(key: str, message: str = "") -> None:
        pair = pairs.pop(key)
        if pair.sock is not None:
            pair.sock.close()
        if message and pair.error is not None:
            conn.sendall(spdy_data(pair.error, message.encode()))
        for stream in (pair.data, pair.error):
            if stream is not None:
                conn.sendall(spdy_data(stream, b"", fin=True))
                of_stream.pop(stream, None)

    def start(key: str) -> None:
        pair = pairs[key]
        try:
            host, _, number = resolve(namespace, pod, pair.port).rpartition(":")
            pair.sock = socket.create_connection((host, int(number)), timeout=5)
            pair.sock.settimeout(None)
        except (PortForwardError, OSError) as exc:
            message = f"error forwarding port {pair.port} to pod {pod}, uid : {exc}"
            log.info("%s/%s: %s", namespace, pod, message)
            finish(key, message)

    try:
        while True:
            socks = {p.sock: key for key, p in pairs.items() if p.sock is not None}
            ready, _, _ = select.select([conn, *socks], [], [], idle_timeout)
            if not ready:
                return
            for sock in ready:
                if sock is not conn:
                    key = socks[sock]
                    if key not in pairs:
                        continue
                    data = sock.recv(1 << 16)
                    if data:
                        conn.sendall(spdy_data(pairs[key].data, data))
                    else:
                        finish(key)
                    continue
                data = _receive(conn)
                if not data:
                    return
                buffer += data
                for kind, ident, flags, body in spdy_frames(buffer):
                    if kind == "data":
                        key, role = of_stream.get(ident, ("", ""))
                        pair = pairs.get(key)
                        if pair is None or role != "data" or pair.sock is None:
                            continue
                        if body:
                            pair.sock.sendall(body)
                        if flags & FLAG_FIN:  # the client's side of this connection is done
                            pair.sock.shutdown(socket.SHUT_WR)
                    elif ident == SYN_STREAM:
                        stream = struct.unpack("!I", body[:4])[0] & 0x7FFFFFFF
                        headers = parse_header_block(inflate.decompress(body[10:]))
                        reply(stream)
                        key, role = headers.get("requestid", ""), headers.get("streamtype", "")
                        try:
                            port = int(headers.get("port", ""))
                        except ValueError:
                            conn.sendall(spdy_control(RST_STREAM, 0, struct.pack("!II", stream, 1)))
                            continue
                        pair = pairs.setdefault(key, _Pair(port))
                        of_stream[stream] = (key, role)
                        if role in ("data", "error"):
                            setattr(pair, role, stream)
                        if pair.data is not None and pair.error is not None and pair.sock is None:
                            start(key)
                    elif ident == RST_STREAM:
                        stream = struct.unpack("!I", body[:4])[0] & 0x7FFFFFFF
                        key, _ = of_stream.get(stream, ("", ""))
                        if key in pairs:
                            finish(key)
                    elif ident == PING:
                        conn.sendall(spdy_control(PING, 0, body))
                    elif ident == GOAWAY:
                        return
                    elif ident == HEADERS:
                        inflate.decompress(body[4:])  # keeps the shared zlib stream in step
    except OSError as exc:
        log.debug("SPDY port-forward to %s/%s ended: %s", namespace, pod, exc)
    finally:
        for pair in pairs.values():
            if pair.sock is not None:
                pair.sock.close()
