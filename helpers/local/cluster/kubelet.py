"""The node's kubelet API, as far as `kubectl logs` and port-forward need it: `GET /containerLogs/<ns>/<pod>/<container>`
and `GET /portForward/<ns>/<pod>` upgraded to WebSocket (`kubelet_portforward`).

The local controller serves it from a thread, over HTTPS on 127.0.0.1, and only to a client whose
certificate the stack's kubelet CA signed: the apiserver's (`--kubelet-client-certificate`). A
request without one fails the TLS handshake. Query parameters as the kubelet reads them:
`follow`, `tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `previous`, `limitBytes`.

A container's log is the log file of its process. `process.start` opens every run of a process
with a header line (`=== <time> starting <name>: <binary>`), so one file holds all runs: the
last run is the current container, the one before it `--previous`.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from helpers.local.cluster import kubelet_portforward as portforward

log = logging.getLogger("kubelet")

_HEADER = re.compile(rb"^=== (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) starting [^\n]*\n", re.M)
_GLOG = re.compile(r"^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{1,6})")
FOLLOW_POLL_S = 0.2


class LogError(Exception):
    """A request the kubelet refuses: carries the HTTP status and the kubelet's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Run:
    """One run of a process inside its log file: bytes [start, end) and when it started (UTC)."""

    start: int
    end: Optional[int]  # None: the run still being written (the last one)
    started: datetime


@dataclass(frozen=True)
class ContainerLog:
    """Which log and which run the kubelet should serve, and whether the container still runs."""

    path: Path
    run: int  # index into runs(): -1 the current container, -2 the previous one
    running: Callable[[], bool]


def runs(path: Path) -> list[Run]:
    """The runs recorded in a log file, oldest first (a file written without headers is one run)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    found = []
    headers = list(_HEADER.finditer(data))
    if not headers:
        return [Run(0, None, datetime.fromtimestamp(path.stat().st_mtime, timezone.utc))] if data else []
    for i, match in enumerate(headers):
        local = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S")
        end = headers[i + 1].start() if i + 1 < len(headers) else None
        if end is not None and data[end - 1:end] == b"\n":
            end -= 1  # the blank line process.start writes before the next header
        found.append(Run(match.end(), end, local.astimezone(timezone.utc)))
    return found


def line_time(line: str, default: datetime) -> datetime:
    """When a line was written: the agent's JSON `ts`, Triton's glog prefix, else `default`."""
    if line.startswith("{"):
        try:
            ts = json.loads(line).get("ts")
            if isinstance(ts, (int, float)):
                return datetime.fromtimestamp(ts, timezone.utc)
        except ValueError:
            pass
    match = _GLOG.match(line)
    if match:
        month, day, hour, minute, second, frac = match.groups()
        try:
            local = datetime(default.year, int(month), int(day), int(hour), int(minute), int(second),
                             int(frac.ljust(6, "0")))
            return local.astimezone(timezone.utc)
        except ValueError:
            pass
    return default


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


@dataclass(frozen=True)
class Options:
    """The query of a containerLogs request."""

    follow: bool = False
    tail_lines: Optional[int] = None
    since: Optional[datetime] = None
    timestamps: bool = False
    previous: bool = False
    limit_bytes: Optional[int] = None

    @classmethod
    def parse(cls, query: str) -> "Options":
        values = {k: v[-1] for k, v in parse_qs(query).items()}

        def flag(name: str) -> bool:
            return values.get(name, "false").lower() in ("true", "1")

        def number(name: str) -> Optional[int]:
            if name not in values:
                return None
            try:
                return int(values[name])
            except ValueError:
                raise LogError(400, f"invalid {name}: {values[name]!r}") from None

        since = None
        if "sinceSeconds" in values:
            since = datetime.now(timezone.utc).timestamp() - (number("sinceSeconds") or 0)
            since = datetime.fromtimestamp(since, timezone.utc)
        elif "sinceTime" in values:
            try:
                since = datetime.fromisoformat(values["sinceTime"].replace("Z", "+00:00"))
            except ValueError:
                raise LogError(400, f"invalid sinceTime: {values['sinceTime']!r}") from None
        return cls(flag("follow"), number("tailLines"), since, flag("timestamps"), flag("previous"),
                   number("limitBytes"))


def _format(lines: list[str], run: Run, options: Options, last: Optional[datetime] = None
            ) -> tuple[list[str], Optional[datetime]]:
    """Apply sinceSeconds/sinceTime and timestamps to complete lines; returns (out, last time seen)."""
    out = []
    moment = last or run.started
    for line in lines:
        moment = line_time(line, moment)
        if options.since and moment < options.since:
            continue
        out.append(f"{_stamp(moment)} {line}" if options.timestamps else line)
    return out, moment


def read_log(source: ContainerLog, options: Options, stop: Optional[threading.Event] = None) -> Iterator[bytes]:
    """The bytes the kubelet would send for this request, followed while `options.follow`.

    Raises LogError at once (before any byte is sent) when there is no such run.
    """
    found = runs(source.path)
    if len(found) < -source.run:
        raise LogError(400, "previous terminated container not found" if source.run < -1
                       else "container has not started yet")
    return _stream(source, found[source.run], source.path.stat().st_size, options, stop)


def _stream(source: ContainerLog, run: Run, size: int, options: Options, stop: Optional[threading.Event]
            ) -> Iterator[bytes]:
    """The run's bytes up to `size` (the file's size when asked), then, following, what comes after."""
    with open(source.path, "rb") as stream:
        stream.seek(run.start)
        data = stream.read((size if run.end is None else min(run.end, size)) - run.start)
        offset = run.start + len(data)
        restarted = _HEADER.search(data) if run.end is None else None
        if restarted:  # the container restarted since runs() looked: this run ends there
            data = data[:max(restarted.start() - 1, 0)]
            run = Run(run.start, run.start + len(data), run.started)
        cut = data.rfind(b"\n") + 1
        lines, partial = data[:cut].decode(errors="replace").splitlines(), data[cut:]
        if partial and run.end is not None:  # a finished run's last line without newline
            lines, partial = lines + [partial.decode(errors="replace")], b""
        if options.tail_lines is not None:
            lines = lines[-options.tail_lines:] if options.tail_lines > 0 else []
        out, last = _format(lines, run, options)
        chunk = "".join(line + "\n" for line in out).encode()
        if options.limit_bytes is not None:
            chunk = chunk[:options.limit_bytes]
        sent = len(chunk)
        if chunk:
            yield chunk
        if not (options.follow and run.end is None):
            return
        pending = partial
        while not (stop and stop.is_set()):
            if options.limit_bytes is not None and sent >= options.limit_bytes:
                return
            stream.seek(offset)
            more = stream.read()
            if more:
                offset += len(more)
                header = _HEADER.search(more)
                if header:  # the container restarted: its log ends here, as the kubelet's stream does
                    more = more[:header.start()]
                    more = more[:-1] if (pending + more).endswith(b"\n\n") else more
                pending += more
                complete, _, pending = pending.rpartition(b"\n")
                if complete:
                    out, last = _format(complete.decode(errors="replace").split("\n"), run, options, last)
                    chunk = "".join(line + "\n" for line in out).encode()
                    if options.limit_bytes is not None:
                        chunk = chunk[:options.limit_bytes - sent]
                    sent += len(chunk)
                    if chunk:
                        yield chunk
                if header:
                    return
            elif not source.running():
                return
            time.sleep(FOLLOW_POLL_S)


Resolver = Callable[[str, str, str, bool], ContainerLog]


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, context: ssl.SSLContext) -> None:
        self.tls = context
        super().__init__(address, handler)

    def finish_request(self, request: socket.socket, client_address) -> None:
        """TLS handshake in the request's own thread; a client without a valid cert is dropped here."""
        try:
            request.settimeout(10)
            secure = self.tls.wrap_socket(request, server_side=True)
            secure.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            log.info("refused a connection from %s:%s: %s", client_address[0], client_address[1], exc)
            return
        self.RequestHandlerClass(secure, client_address, self)


def _handler(resolve: Resolver, stop: threading.Event, ports: Optional[portforward.PortResolver] = None) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mms-local-kubelet"
        rbufsize = 0  # unbuffered: after a WebSocket upgrade no client bytes may sit in a buffer

        def log_message(self, fmt: str, *args) -> None:
            log.debug("%s %s", self.address_string(), fmt % args)

        def _error(self, status: int, message: str) -> None:
            body = message.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if parts == ["healthz"]:
                return self._error(200, "ok")
            if parts[0] == "portForward" and len(parts) in (3, 4):
                return self._port_forward(parts[1], parts[2], url.query)
            if len(parts) != 4 or parts[0] != "containerLogs":
                return self._error(404, "404 page not found")
            _, namespace, pod, container = parts
            try:
                options = Options.parse(url.query)
                source = resolve(namespace, pod, container, options.previous)
                stream = read_log(source, options, stop)
            except LogError as exc:
                return self._error(exc.status, str(exc))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                self.wfile.flush()
                for chunk in stream:
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return  # the client went away (kubectl logs -f ended)

        do_POST = do_GET

        def _port_forward(self, namespace: str, pod: str, query: str) -> None:
            if ports is None:
                return self._error(404, "404 page not found")
            upgrade = self.headers.get("Upgrade", "").lower()
            if upgrade == portforward.SPDY_UPGRADE.lower():
                return self._port_forward_spdy(namespace, pod)
            if upgrade != "websocket":
                return self._error(400, "unable to upgrade: missing upgrade headers in request")
            protocol = portforward.choose_protocol(self.headers.get("Sec-WebSocket-Protocol", ""))
            key = self.headers.get("Sec-WebSocket-Key", "")
            try:
                wanted = portforward.ports_of(query)
                if protocol is None:
                    raise portforward.PortForwardError(400, "no supported subprotocol: use one of "
                                                            + ", ".join(portforward.PROTOCOLS))
                if not key:
                    raise portforward.PortForwardError(400, "missing Sec-WebSocket-Key")
            except portforward.PortForwardError as exc:
                return self._error(exc.status, str(exc))
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", portforward.accept_key(key))
            if protocol:
                self.send_header("Sec-WebSocket-Protocol", protocol)
            self.end_headers()
            self.close_connection = True
            log.info("port-forward %s/%s ports %s", namespace, pod, wanted)
            portforward.serve(self.connection, namespace, pod, wanted, ports)

        def _port_forward_spdy(self, namespace: str, pod: str) -> None:
            offered = [p.strip() for p in self.headers.get("X-Stream-Protocol-Version", "").split(",")]
            if portforward.PORTFORWARD_PROTOCOL not in offered:
                return self._error(403, f"unable to upgrade: unable to negotiate protocol: client supports "
                                        f"{offered}, server supports [{portforward.PORTFORWARD_PROTOCOL}]")
            self.send_response(101, "Switching Protocols")
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", portforward.SPDY_UPGRADE)
            self.send_header("X-Stream-Protocol-Version", portforward.PORTFORWARD_PROTOCOL)
            self.end_headers()
            self.close_connection = True
            log.info("port-forward %s/%s over SPDY", namespace, pod)
            portforward.serve_spdy(self.connection, namespace, pod, ports)

    return Handler


class KubeletServer:
    """The kubelet endpoint: HTTPS on 127.0.0.1:`port`, client certs from `client_ca` only."""

    def __init__(self, port: int, cert: Path, key: Path, client_ca: Path, resolve: Resolver,
                 ports: Optional[portforward.PortResolver] = None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        self.stop_event = threading.Event()
        self.httpd = _TLSServer(("127.0.0.1", port), _handler(resolve, self.stop_event, ports), context)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="kubelet", daemon=True)

    def start(self) -> "KubeletServer":
        self.thread.start()
        log.info("kubelet API listening on https://127.0.0.1:%s (client certificates only)", self.port)
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
