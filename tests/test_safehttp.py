"""safe_request: SSRF refusals, no redirects, allow-list, capped reads and deadlines.

Only loopback servers in threads. Every test runs under a guard that refuses (and
records) any outgoing connection to a non-loopback address, and the refusal corpus is
aimed at canary listeners that count every connection they accept.
"""

from __future__ import annotations

import gzip
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from requests_hardened.ip_filter import InvalidIPAddress

from automation.safehttp import (
    DeliveryError,
    NetworkError,
    UnsafeURLError,
    WebhookTimeout,
    address_category,
    redact_url,
    safe_request,
)

# --------------------------------------------------------------------------- guards


@dataclass
class ConnectLog:
    attempts: list[Any] = field(default_factory=list)
    refused: list[Any] = field(default_factory=list)


def _is_loopback(address: Any) -> bool:
    if not isinstance(address, tuple):
        return False
    try:
        ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectLog]:
    """Record every outgoing connection; refuse any that is not to a loopback address."""
    log = ConnectLog()
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(address: Any) -> None:
        log.attempts.append(address)
        if not _is_loopback(address):
            log.refused.append(address)
            raise OSError(f"test guard: connection to {address!r} refused")

    def connect(sock: socket.socket, address: Any) -> None:
        check(address)
        original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(address)
        return original_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield log
    assert log.refused == [], "a test tried to reach a non-loopback address"


class Canary:
    """A TCP listener that counts accepted connections and closes them at once."""

    def __init__(self, family: socket.AddressFamily, host: str) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def canaries() -> Iterator[tuple[Canary, Canary | None]]:
    v4 = Canary(socket.AF_INET, "127.0.0.1")
    try:
        v6: Canary | None = Canary(socket.AF_INET6, "::1")
    except OSError:
        v6 = None
    yield v4, v6
    for canary in (v4, v6):
        if canary is not None:
            canary.close()


def canary_total(canaries: tuple[Canary, Canary | None]) -> int:
    return sum(canary.accepted for canary in canaries if canary is not None)


# --------------------------------------------------------------------------- resolver


@dataclass
class FakeDNS:
    """Names under ``.test`` answered in-process; everything else goes to the real resolver."""

    answers: dict[str, str] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.endswith(".test"):
            return real(host, port, *args, **kwargs)
        dns.lookups.append(name)
        if name not in dns.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = dns.answers[name]
        if ":" in address:
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, int(port or 0), 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return dns


# --------------------------------------------------------------------------- servers


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[["_Handler"], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder: Responder) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.received: list[Received] = []
        self.stop = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up on a trickling handler is expected; stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.received.append(
            Received(self.command, self.path, dict(self.headers.items()), body)
        )
        try:
            self.server.responder(self)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@contextmanager
def serve(responder: Responder) -> Iterator[_Server]:
    server = _Server(responder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LOCAL = ("127.0.0.1",)


# --------------------------------------------------------------------------- refusals

REFUSED = [
    # schemes and malformed URLs
    "file:///etc/passwd",
    "file://127.0.0.1:{p}/etc/passwd",
    "gopher://127.0.0.1:{p}/_GET%20/",
    "ftp://127.0.0.1:{p}/",
    "data:text/plain,hello",
    "javascript:alert(1)",
    "dict://127.0.0.1:{p}/info",
    "ldap://127.0.0.1:{p}/",
    "ws://127.0.0.1:{p}/",
    "127.0.0.1:{p}/hook",
    "//127.0.0.1:{p}/hook",
    "http:///hook",
    "http://:{p}/hook",
    # IPv4 loopback, also hidden behind userinfo and parser tricks
    "http://127.0.0.1:{p}/",
    "https://127.0.0.1:{p}/",
    "HTTP://127.0.0.1:{p}/",
    "http://127.0.0.2:{p}/",
    "http://127.255.255.254:{p}/",
    "http://127.0.0.1.:{p}/",
    "http://user:secret@127.0.0.1:{p}/",
    "http://hooks.example.com@127.0.0.1:{p}/",
    "http://127.0.0.1:{p}\\@hooks.example.com/",
    "http://127.0.0.1:{p}#@hooks.example.com/",
    # names for loopback: localhost (RFC 6761) and names from /etc/hosts
    "http://localhost:{p}/",
    "http://LOCALHOST:{p}/",
    "http://localhost.:{p}/",
    "http://api.localhost:{p}/",
    "http://runsc:{p}/",
    "http://vm:{p}/",
    "http://VM:{p}/",
    # other spellings of 127.0.0.1 and 0.0.0.0 the C resolver accepts
    "http://2130706433:{p}/",
    "http://0177.0.0.1:{p}/",
    "http://0x7f.1:{p}/",
    "http://127.1:{p}/",
    "http://0x7f000001:{p}/",
    "http://017700000001:{p}/",
    "http://0x7f.0x0.0x0.0x1:{p}/",
    "http://0177.1:{p}/",
    "http://127.0.1:{p}/",
    "http://0:{p}/",
    "http://0.0.0.0:{p}/",
    # IPv6 loopback, unspecified, mapped and embedding forms
    "http://[::1]:{p6}/",
    "http://[0:0:0:0:0:0:0:1]:{p6}/",
    "http://[::]:{p6}/",
    "http://[::ffff:127.0.0.1]:{p}/",
    "http://[::ffff:7f00:1]:{p}/",
    "http://[::ffff:0:127.0.0.1]:{p}/",
    "http://[::127.0.0.1]:{p}/",
    "http://[::ffff:10.0.0.1]:{p}/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[fe80::1]:{p6}/",
    "http://[fe80::1%25lo]:{p6}/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fec0::1]/",
    "http://[2002:7f00:1::]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[ff02::1]/",
    # RFC 1918, link-local and metadata, CGNAT, multicast, reserved, special-purpose
    "http://10.0.0.1:{p}/",
    "http://10.255.255.255/",
    "http://10.1/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.0.1/",
    "http://192.168.1.254:8080/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254:{p}/computeMetadata/v1/",
    "http://2852039166/latest/meta-data/",
    "http://0xa9fea9fe/",
    "http://169.254.0.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://224.0.0.1/",
    "http://239.255.255.250:1900/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.0.8/",
    "http://198.18.0.1/",
]


def test_corpus_is_large_enough() -> None:
    assert len(REFUSED) >= 50
    assert len(set(REFUSED)) == len(REFUSED)


@pytest.mark.parametrize("template", REFUSED)
def test_refused_without_any_connection(
    template: str,
    canaries: tuple[Canary, Canary | None],
    connections: ConnectLog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    v4, v6 = canaries
    url = template.format(p=v4.port, p6=(v6 or v4).port)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(UnsafeURLError) as refused:
        safe_request("POST", url, headers={"X-Test": "1"}, body=b"{}")

    error = refused.value
    assert error.code == "unsafe_url"
    assert not error.retryable
    assert error.reason in {"scheme_not_allowed", "invalid_url", "blocked_address"}
    assert len(error.message) > 15
    assert "secret" not in error.message
    assert "secret" not in caplog.text
    assert connections.attempts == []
    assert canary_total(canaries) == 0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed; use http or https"),
        (
            "http://10.0.0.1/",
            "host '10.0.0.1' is a private address; webhooks may only call public addresses",
        ),
        (
            "http://0x7f.1/",
            "host '0x7f.1' is a loopback address; webhooks may only call public addresses",
        ),
        (
            "http://169.254.169.254/",
            "host '169.254.169.254' is a cloud metadata address; "
            "webhooks may only call public addresses",
        ),
        (
            "http://[::ffff:127.0.0.1]/",
            "host '::ffff:127.0.0.1' is an IPv4-mapped loopback address; "
            "webhooks may only call public addresses",
        ),
        (
            "http://100.64.0.1/",
            "host '100.64.0.1' is a shared (CGNAT) address; "
            "webhooks may only call public addresses",
        ),
        (
            "http://vm/",
            "host 'vm' resolves to a loopback address; webhooks may only call public addresses",
        ),
        ("http:///hook", "not a valid URL (scheme, host or port)"),
    ],
)
def test_refusal_messages_are_clear(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError) as refused:
        safe_request("GET", url)

    assert refused.value.message == message


def test_name_from_hosts_file_is_refused_by_requests_hardened_after_resolution(
    canaries: tuple[Canary, Canary | None],
) -> None:
    """Given a plain host name, the URL check passes it; the library's connect-time check,
    after resolving it to 127.0.0.1, refuses it."""
    with pytest.raises(UnsafeURLError) as refused:
        safe_request("GET", f"http://runsc:{canaries[0].port}/")

    assert refused.value.data == {"host": "runsc", "category": "loopback", "checked": "connect"}
    assert type(refused.value.__cause__) is InvalidIPAddress
    assert canary_total(canaries) == 0


def test_every_attempt_resolves_and_checks_again(
    fake_dns: FakeDNS, canaries: tuple[Canary, Canary | None]
) -> None:
    fake_dns.answers["hooks.example.test"] = "127.0.0.1"
    url = f"http://hooks.example.test:{canaries[0].port}/"

    for _ in range(3):
        with pytest.raises(UnsafeURLError):
            safe_request("POST", url, body=b"{}")

    assert fake_dns.lookups == ["hooks.example.test"] * 3
    assert canary_total(canaries) == 0


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("169.254.169.254", "cloud metadata"),
        ("10.1.2.3", "private"),
        ("::1", "loopback"),
        ("fd12:3456::1", "unique local"),
        ("::ffff:192.168.0.10", "private"),  # requests-hardened unwraps mapped addresses
    ],
)
def test_names_resolving_to_blocked_addresses_are_refused_at_connect(
    fake_dns: FakeDNS, connections: ConnectLog, address: str, category: str
) -> None:
    fake_dns.answers["internal.example.test"] = address

    with pytest.raises(UnsafeURLError) as refused:
        safe_request("GET", "http://internal.example.test/")

    assert refused.value.data["category"] == category
    assert refused.value.data["checked"] == "connect"
    assert connections.attempts == []


def test_second_layer_catches_what_requests_hardened_lets_through(
    fake_dns: FakeDNS, canaries: tuple[Canary, Canary | None], connections: ConnectLog
) -> None:
    """requests-hardened accepts IPv4-compatible ``::127.0.0.1`` (not "private" for
    Python 3.11); the pinned address is classified again and refused."""
    fake_dns.answers["compat.example.test"] = "::127.0.0.1"

    with pytest.raises(UnsafeURLError) as refused:
        safe_request("GET", f"http://compat.example.test:{canaries[0].port}/")

    assert refused.value.data["category"] == "reserved"
    assert type(refused.value.__cause__).__name__ == "_BlockedAddress"
    assert connections.attempts == []


# --------------------------------------------------------------------------- redirects


def test_redirect_to_loopback_is_returned_not_followed(
    fake_dns: FakeDNS, canaries: tuple[Canary, Canary | None], connections: ConnectLog
) -> None:
    """Given an allow-listed, public-looking host that answers 302 to a loopback canary,
    the 302 comes back as the response and the canary is never contacted."""
    fake_dns.answers["hooks.partner.test"] = "127.0.0.1"
    location = f"http://127.0.0.1:{canaries[0].port}/admin"

    def redirect(handler: _Handler) -> None:
        handler.reply(302, b"moved", {"Location": location})

    with serve(redirect) as server:
        response = safe_request(
            "POST",
            f"http://hooks.partner.test:{server.port}/hook",
            body=b"{}",
            allow_hosts={"hooks.partner.test"},
        )

    assert response.status == 302
    assert response.headers["location"] == location
    assert response.body == b"moved"
    assert len(server.received) == 1
    assert canary_total(canaries) == 0
    assert [address[1] for address in connections.attempts] == [server.port]


def test_redirect_with_an_endless_body_is_read_only_up_to_the_cap() -> None:
    """requests reads a 3xx body in full to prepare ``Response.next``; we must not."""

    def endless(handler: _Handler) -> None:
        handler.send_response(301)
        handler.send_header("Location", "http://127.0.0.1:1/")
        handler.send_header("Content-Length", str(10**12))
        handler.end_headers()
        while not handler.server.stop.is_set():
            handler.wfile.write(b"x" * 65536)

    with serve(endless) as server:
        response = safe_request(
            "GET",
            f"http://127.0.0.1:{server.port}/",
            max_response_bytes=1000,
            total_timeout=5,
            allow_hosts=LOCAL,
        )

    # an answer, not a timeout: the body was not read on to the 5 s deadline
    assert (response.status, len(response.body), response.truncated) == (301, 1000, True)


def test_redirect_to_an_allowed_host_is_not_followed_either() -> None:
    def redirect(handler: _Handler) -> None:
        if handler.path == "/hook":
            handler.reply(307, headers={"Location": "/landed"})
        else:
            handler.reply(200, b"landed")

    with serve(redirect) as server:
        response = safe_request(
            "POST", f"http://127.0.0.1:{server.port}/hook", body=b"x", allow_hosts=LOCAL
        )

    assert response.status == 307
    assert [received.path for received in server.received] == ["/hook"]


# --------------------------------------------------------------------------- allow-list


def test_allow_listed_server_receives_body_and_headers_intact() -> None:
    body = b'{"event": "lead.created", "bytes": "\xff\x00\xfe"}'
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": "1674087231",
        "webhook-signature": "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
        "User-Agent": "crm-sync/2",
    }

    def created(handler: _Handler) -> None:
        handler.reply(201, b'{"ok": true}', {"Content-Type": "application/json", "X-Id": "42"})

    with serve(created) as server:
        response = safe_request(
            "put",
            f"http://127.0.0.1:{server.port}/hooks/lead?x=1&y=%20",
            headers=headers,
            body=body,
            allow_hosts=LOCAL,
        )

    [received] = server.received
    assert received.method == "PUT"
    assert received.path == "/hooks/lead?x=1&y=%20"
    assert received.body == body
    for name, value in headers.items():
        assert received.headers[name] == value
    assert received.headers["Host"] == f"127.0.0.1:{server.port}"
    assert received.headers["Content-Length"] == str(len(body))
    assert response.status == 201
    assert response.body == b'{"ok": true}'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-id"] == "42"
    assert response.truncated is False
    assert isinstance(response.elapsed_ms, int | float) and response.elapsed_ms >= 0


def test_allow_list_matches_only_the_exact_host(fake_dns: FakeDNS, connections: ConnectLog) -> None:
    fake_dns.answers["hooks.partner.test"] = "127.0.0.1"

    with serve(lambda handler: handler.reply(204)) as server:
        port = server.port
        for url in (
            f"http://localhost:{port}/",
            f"http://2130706433:{port}/",
            f"http://127.1:{port}/",
            f"http://[::ffff:127.0.0.1]:{port}/",
            f"http://hooks.partner.test:{port}/",
        ):
            with pytest.raises(UnsafeURLError):
                safe_request("GET", url, allow_hosts=LOCAL)
        assert server.received == []
        assert connections.attempts == []

        assert safe_request("GET", f"http://LOCALHOST:{port}/", allow_hosts={"localhost"}).status
        assert safe_request("GET", f"http://127.0.0.1:{port}/", allow_hosts={"127.0.0.1."}).status
        assert (
            safe_request(
                "GET", f"http://hooks.partner.test:{port}/", allow_hosts={"HOOKS.partner.test"}
            ).status
            == 204
        )

    assert len(server.received) == 3


def test_userinfo_is_sent_as_basic_auth_and_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    with serve(lambda handler: handler.reply(200, b"ok")) as server:
        safe_request(
            "POST", f"http://alice:s3cr3t@127.0.0.1:{server.port}/hook?token=t0k", allow_hosts=LOCAL
        )
    with pytest.raises(UnsafeURLError) as refused:
        safe_request("POST", "http://alice:s3cr3t@10.0.0.1/hook")

    assert server.received[0].headers["Authorization"] == "Basic YWxpY2U6czNjcjN0"
    assert "s3cr3t" not in caplog.text
    ours = [
        record.getMessage() for record in caplog.records if record.name == "automation.safehttp"
    ]
    assert not any("t0k" in message for message in ours)
    assert "s3cr3t" not in str(refused.value)
    assert f"127.0.0.1:{server.port}/hook" in caplog.text


# --------------------------------------------------------------------------- reading


def test_response_read_is_capped() -> None:
    payload = bytes(range(256)) * 800  # 200 KiB

    with serve(lambda handler: handler.reply(200, payload)) as server:
        url = f"http://127.0.0.1:{server.port}/"
        capped = safe_request("GET", url, max_response_bytes=1000, allow_hosts=LOCAL)
        exact = safe_request("GET", url, max_response_bytes=len(payload), allow_hosts=LOCAL)
        empty = safe_request("GET", url, max_response_bytes=0, allow_hosts=LOCAL)

    assert capped.body == payload[:1000]
    assert capped.truncated is True
    assert exact.body == payload
    assert exact.truncated is False
    assert empty.body == b""
    assert empty.truncated is True


def test_chunked_response_is_capped() -> None:
    def chunked(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for _ in range(50):
            handler.wfile.write(b"400\r\n" + b"z" * 0x400 + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    with serve(chunked) as server:
        response = safe_request(
            "GET", f"http://127.0.0.1:{server.port}/", max_response_bytes=3000, allow_hosts=LOCAL
        )
        whole = safe_request(
            "GET", f"http://127.0.0.1:{server.port}/", max_response_bytes=10**6, allow_hosts=LOCAL
        )

    assert response.body == b"z" * 3000
    assert response.truncated is True
    assert len(whole.body) == 50 * 0x400
    assert whole.truncated is False


def test_compressed_response_is_capped_after_decoding() -> None:
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))

    def compressed(handler: _Handler) -> None:
        handler.reply(200, bomb, {"Content-Encoding": "gzip"})

    with serve(compressed) as server:
        response = safe_request(
            "GET", f"http://127.0.0.1:{server.port}/", max_response_bytes=4096, allow_hosts=LOCAL
        )

    assert server.received[0].headers["Accept-Encoding"] == "identity"
    assert response.body == b"\0" * 4096
    assert response.truncated is True


def test_head_and_no_content_responses() -> None:
    with serve(lambda handler: handler.reply(204)) as server:
        head = safe_request("HEAD", f"http://127.0.0.1:{server.port}/", allow_hosts=LOCAL)

    assert (head.status, head.body, head.truncated) == (204, b"", False)


def test_server_error_is_a_response_not_an_exception() -> None:
    def busy(handler: _Handler) -> None:
        handler.reply(503, b"busy", {"Retry-After": "7"})

    with serve(busy) as server:
        response = safe_request("POST", f"http://127.0.0.1:{server.port}/", allow_hosts=LOCAL)

    assert (response.status, response.headers["retry-after"]) == (503, "7")


# --------------------------------------------------------------------------- time


def test_trickling_body_is_cut_off_at_the_total_deadline() -> None:
    sent = {"bytes": 0}

    def trickle(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(1000):
            handler.wfile.write(b".")
            handler.wfile.flush()
            sent["bytes"] += 1
            if handler.server.stop.wait(0.05):
                return

    with serve(trickle) as server:
        with pytest.raises(WebhookTimeout) as timed_out:
            safe_request(
                "GET",
                f"http://127.0.0.1:{server.port}/",
                read_timeout=5,
                total_timeout=0.6,
                allow_hosts=LOCAL,
            )
        trickled = sent["bytes"]  # when the client gave up, mid-body

    assert timed_out.value.code == "timeout"
    assert timed_out.value.reason == "total_timeout"  # each byte came well within 5 s
    assert timed_out.value.retryable
    assert 0 < trickled < 1000


def test_stalled_headers_are_cut_off_at_the_total_deadline() -> None:
    replied = threading.Event()

    def stall(handler: _Handler) -> None:
        if not handler.server.stop.wait(5):
            replied.set()
            handler.reply(200, b"late")

    with serve(stall) as server:
        with pytest.raises(WebhookTimeout) as timed_out:
            safe_request(
                "POST",
                f"http://127.0.0.1:{server.port}/",
                read_timeout=10,
                total_timeout=0.5,
                allow_hosts=LOCAL,
            )
        late = replied.is_set()

    assert timed_out.value.reason == "total_timeout"
    assert not late  # the client gave up while the server was still stalling


def test_silent_server_hits_the_read_timeout_first() -> None:
    resumed = threading.Event()

    def pause(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "10")
        handler.end_headers()
        handler.wfile.write(b"ab")
        handler.wfile.flush()
        if not handler.server.stop.wait(5):
            resumed.set()

    with serve(pause) as server:
        with pytest.raises(WebhookTimeout) as timed_out:
            safe_request(
                "GET",
                f"http://127.0.0.1:{server.port}/",
                read_timeout=0.3,
                total_timeout=10,
                allow_hosts=LOCAL,
            )
        silent = not resumed.is_set()

    assert timed_out.value.reason == "read_timeout"
    assert silent  # the client gave up while the server was still silent


def test_silence_mid_body_is_cut_off_at_the_total_deadline_before_the_read_timeout() -> None:
    """Each read waits at most the time left, not the full read timeout."""

    resumed = threading.Event()

    def pause(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "10")
        handler.end_headers()
        handler.wfile.write(b"ab")
        handler.wfile.flush()
        if not handler.server.stop.wait(5):
            resumed.set()

    with serve(pause) as server:
        with pytest.raises(WebhookTimeout) as timed_out:
            safe_request(
                "GET",
                f"http://127.0.0.1:{server.port}/",
                read_timeout=5,
                total_timeout=0.5,
                allow_hosts=LOCAL,
            )
        silent = not resumed.is_set()

    assert timed_out.value.reason == "total_timeout"  # not the 5 s read timeout
    assert silent


# --------------------------------------------------------------------------- network errors


def test_connection_refused_is_a_network_error() -> None:
    port = free_port()

    with pytest.raises(NetworkError) as failed:
        safe_request("POST", f"http://127.0.0.1:{port}/", body=b"{}", allow_hosts=LOCAL)

    assert failed.value.code == "network_error"
    assert failed.value.reason == "connection_refused"
    assert failed.value.retryable
    assert failed.value.message == f"connection to 127.0.0.1:{port} was refused"


def test_unresolvable_name_is_a_network_error(fake_dns: FakeDNS) -> None:
    with pytest.raises(NetworkError) as failed:
        safe_request("GET", "https://nowhere.example.test/hook")

    assert failed.value.reason == "dns_error"
    assert fake_dns.lookups == ["nowhere.example.test"]


def test_server_hanging_up_mid_body_is_a_network_error() -> None:
    def hang_up(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b"partial")
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    with serve(hang_up) as server, pytest.raises(NetworkError):
        safe_request("GET", f"http://127.0.0.1:{server.port}/", allow_hosts=LOCAL)


def test_tls_failure_is_a_network_error() -> None:
    with (
        serve(lambda handler: handler.reply(200, b"plain http")) as server,
        pytest.raises(NetworkError) as failed,
    ):
        safe_request("GET", f"https://127.0.0.1:{server.port}/", allow_hosts=LOCAL)

    assert failed.value.reason == "tls_error"


def test_proxy_settings_from_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch, canaries: tuple[Canary, Canary | None]
) -> None:
    proxy = f"http://127.0.0.1:{canaries[0].port}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with serve(lambda handler: handler.reply(200, b"direct")) as server:
        response = safe_request("GET", f"http://127.0.0.1:{server.port}/", allow_hosts=LOCAL)

    assert response.body == b"direct"
    assert canary_total(canaries) == 0


# --------------------------------------------------------------------------- arguments


def test_a_single_string_is_not_an_allow_list() -> None:
    with pytest.raises(TypeError, match="allow_hosts"):
        safe_request("GET", "http://127.0.0.1:1/", allow_hosts="127.0.0.1")


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GET /admin HTTP/1.1\r\nX:", None),
        ("", None),
        ("POST", {"X-Evil": "a\r\nInjected: yes"}),
        ("POST", {"Bad Name": "x"}),
        ("POST", {"X-Null": "a\0b"}),
    ],
)
def test_invalid_method_or_header_is_refused(
    method: str, headers: dict[str, str] | None, connections: ConnectLog
) -> None:
    with pytest.raises(DeliveryError) as refused:
        safe_request(method, "http://127.0.0.1:1/", headers=headers, allow_hosts=LOCAL)

    assert refused.value.code == "invalid_request"
    assert "Injected: yes" not in refused.value.message
    assert connections.attempts == []


@pytest.mark.parametrize(
    "limits",
    [
        {"connect_timeout": 0},
        {"total_timeout": -1},
        {"read_timeout": 0},
        {"max_response_bytes": -1},
    ],
)
def test_non_positive_limits_are_programming_errors(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        safe_request("GET", "http://127.0.0.1:1/", allow_hosts=LOCAL, **limits)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("address", "category"),
    [
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.20.1.1", "private"),
        ("192.168.10.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("224.0.0.251", "multicast"),
        ("ff02::fb", "multicast"),
        ("240.0.0.1", "reserved"),
        ("fc00::1", "unique local"),
        ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
        ("::127.0.0.1", "reserved"),
        ("2002:c0a8:1::", "6to4"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("64:ff9b::a00:1", "reserved"),
        ("192.0.2.1", "special-purpose"),
        ("3fff::1", "special-purpose"),
    ],
)
def test_address_category(address: str, category: str | None) -> None:
    assert address_category(ipaddress.ip_address(address)) == category


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://bob:pw@Hooks.Example.com:8443/a/b?token=x#f",
            "https://hooks.example.com:8443/a/b",
        ),
        ("http://[::1]:80/x", "http://[::1]:80/x"),
        ("http://h:99999/", "<invalid url>"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
