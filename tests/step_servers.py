"""Real servers on loopback for the step-type tests: SMTP (aiosmtpd), an HTTP webhook
receiver with scripted answers, and a canary listener that counts connections.

Used by test_steps_*.py, test_secrets*.py and test_export*.py.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.conftest import free_port

# --- SMTP -----------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def body(self, kind: str) -> str:
        part = self.message.get_body(preferencelist=(kind,))
        text = "" if part is None else str(part.get_content())  # type: ignore[attr-defined]
        return text.replace("\r\n", "\n")


class SMTPSink:
    """Accepts every message and keeps it."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            ReceivedMail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                bytes(envelope.original_content or envelope.content),
            )
        )
        return "250 Message accepted"

    def wait(self, count: int = 1, timeout: float = 20) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@contextmanager
def smtp_server() -> Iterator[SMTPSink]:
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    sink = SMTPSink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


# --- HTTP -----------------------------------------------------------------------------


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = b'{"ok": true}'
    hold: bool = False  # wait until the receiver is released before answering
    echo_header: str = ""  # put this request header's value in the body and x-echo
    echo_all: bool = False  # answer the whole request (path, headers, body) as JSON


@dataclass
class ReceivedRequest:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """A loopback HTTP server answering from a script (then ``default``), recording all."""

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self.script: list[Answer] = []
        self.default = Answer()
        self.release = threading.Event()
        self.port = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def next_answer(self, request: ReceivedRequest) -> Answer:
        with self.lock:
            self.requests.append(request)
            return self.script.pop(0) if self.script else self.default

    def wait(self, count: int = 1, timeout: float = 30) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = ReceivedRequest(
                time.monotonic(),
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
            )
            answer = receiver.next_answer(request)
            if answer.hold:
                receiver.release.wait(120)
            payload = answer.body
            headers = dict(answer.headers)
            if answer.echo_header:
                echoed = request.headers.get(answer.echo_header.lower(), "")
                payload = json.dumps({"echo": echoed}).encode()
                headers["x-echo"] = echoed
                headers.setdefault("Content-Type", "application/json")
            if answer.echo_all:
                payload = json.dumps(
                    {
                        "method": request.method,
                        "path": request.path,
                        "headers": request.headers,
                        "body": request.body.decode("utf-8", errors="replace"),
                    }
                ).encode()
                headers["x-echo"] = json.dumps(request.path)
                headers.setdefault("Content-Type", "application/json")
            try:
                self.send_response(answer.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client is gone (a killed worker, or a capped read)
            self.close_connection = True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up early is part of the tests


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    server = _QuietServer(("127.0.0.1", 0), _handler(receiver))
    receiver.port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()


# --- a canary that counts connections --------------------------------------------------


class Canary:
    def __init__(self) -> None:
        self.connections = 0
        self.port = 0


@contextmanager
def canary_listener() -> Iterator[Canary]:
    """Listens on 127.0.0.1 and on ::1 (same port when possible); counts every accept."""
    canary = Canary()
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM)]
    sockets[0].bind(("127.0.0.1", 0))
    canary.port = sockets[0].getsockname()[1]
    try:
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        six.bind(("::1", canary.port))
        sockets.append(six)
    except OSError:
        pass
    stop = threading.Event()

    def serve(sock: socket.socket) -> None:
        sock.listen(16)
        sock.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            canary.connections += 1
            conn.close()

    threads = [threading.Thread(target=serve, args=(s,), daemon=True) for s in sockets]
    for thread in threads:
        thread.start()
    try:
        yield canary
    finally:
        stop.set()
        for thread in threads:
            thread.join(2)
        for sock in sockets:
            sock.close()


# --- workflows of one step ------------------------------------------------------------


def one_step_workflow(slug: str, step_type: str, config: dict[str, Any], **step: Any) -> Any:
    """Publish a workflow (manual execution, no trigger) whose only step is ``step_type``."""
    from workflows.services import workflow_save

    return workflow_save(
        document={
            "slug": slug,
            "name": slug,
            "triggers": [],
            "steps": [{"key": "step", "type": step_type, "config": config, **step}],
        }
    )


def execute(workflow: Any, payload: dict[str, Any] | None = None, actor: Any = None) -> Any:
    """Start a run of ``workflow`` by hand (committed at once outside a test transaction)."""
    from automation.services import workflow_execute

    return workflow_execute(workflow_id=workflow.pk, payload=payload or {}, actor=actor)


def step_of(run: Any) -> Any:
    from automation.models import ActionRun

    return ActionRun.objects.get(run=run, step_key="step")
