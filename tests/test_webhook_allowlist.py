"""The webhook allow-list takes ports, refuses unknown forms at startup, and the URL a
webhook records is the one the HTTP client sent.

Given ``FLOWDESK_WEBHOOK_ALLOW_HOSTS`` entries with and without ports, when a webhook
calls a loopback receiver, then ``127.0.0.1:<its port>`` lets it through while another
port of the same host stays refused (a canary on it counts no connection); an entry of
any other form (a scheme, a path, a wildcard, a bad port) fails ``manage.py check`` with
a message naming it. Given a URL with a backslash in its authority, when the step runs,
then what is logged and recorded is the host actually called.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core import checks

from automation.safehttp import UnsafeURLError, parse_allow_entry, safe_request, sent_url
from tests.step_servers import (
    Answer,
    canary_listener,
    execute,
    one_step_workflow,
    step_of,
    webhook_receiver,
)

ROOT = Path(__file__).resolve().parent.parent

VALID = {
    "hooks.internal": ("hooks.internal", None),
    "HOOKS.Internal.": ("hooks.internal", None),
    "10.0.0.5": ("10.0.0.5", None),
    "10.0.0.5:8443": ("10.0.0.5", 8443),
    "hooks.internal:80": ("hooks.internal", 80),
    "fd00::1": ("fd00::1", None),
    "[fd00::1]": ("fd00::1", None),
    "[FD00::1]:443": ("fd00::1", 443),
    " localhost:8080 ": ("localhost", 8080),
}
INVALID = [
    "",
    " ",
    "http://hooks.internal",
    "hooks.internal/path",
    "user@hooks.internal",
    "*.example.com",
    "hooks.internal:",
    "hooks.internal:0",
    "hooks.internal:70000",
    "hooks.internal:abc",
    "hooks.internal:\uff18\uff10",
    "[fd00::1",
    "[hooks]:80",
    "a b",
    "hooks.internal:80:90",
    "h\u00f6oks.internal",
]


@pytest.mark.parametrize("entry", list(VALID))
def test_allow_list_entries_with_and_without_ports(entry: str) -> None:
    assert parse_allow_entry(entry) == VALID[entry]


@pytest.mark.parametrize("entry", INVALID)
def test_allow_list_entries_of_other_forms_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="allow-list entry"):
        parse_allow_entry(entry)


def test_a_port_entry_allows_that_port_only() -> None:
    with webhook_receiver() as receiver, canary_listener() as canary:
        allowed = [f"127.0.0.1:{receiver.port}"]
        response = safe_request("POST", f"{receiver.url}/hook", body=b"{}", allow_hosts=allowed)
        assert response.status == 200 and len(receiver.requests) == 1
        with pytest.raises(UnsafeURLError) as refused:
            safe_request("GET", f"http://127.0.0.1:{canary.port}/", allow_hosts=allowed)
        assert refused.value.reason == "blocked_address"
        assert canary.connections == 0
        # A host-only entry still allows every port.
        assert safe_request("GET", f"{receiver.url}/", allow_hosts=["127.0.0.1"]).status == 200


def test_a_bad_entry_fails_the_system_check(settings: Any) -> None:
    settings.FLOWDESK = {
        **settings.FLOWDESK,
        "WEBHOOK_ALLOW_HOSTS": ["127.0.0.1:8080", "https://hooks.internal"],
    }
    errors = [e for e in checks.run_checks() if e.id == "flowdesk.E001"]
    assert len(errors) == 1 and "'https://hooks.internal'" in errors[0].msg


def test_manage_py_refuses_to_start_with_a_bad_entry() -> None:
    env = {**os.environ, "FLOWDESK_WEBHOOK_ALLOW_HOSTS": "10.0.0.5:8443,hooks.internal:abc"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "flowdesk.E001" in result.stderr and "'hooks.internal:abc'" in result.stderr
    env["FLOWDESK_WEBHOOK_ALLOW_HOSTS"] = "10.0.0.5:8443,[fd00::1]:443"
    ok = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr


def test_sent_url_is_the_url_the_client_sends() -> None:
    assert sent_url("http://127.0.0.1\\@evil.example/x") == "http://127.0.0.1/%5C@evil.example/x"
    assert sent_url("http://evil.example\\@127.0.0.1/x") == "http://evil.example/%5C@127.0.0.1/x"
    assert sent_url("https://user:pw@Hooks.Example/p?token=t#f") == "https://hooks.example/p"
    assert sent_url("http://[::1") == "<invalid url>"


@pytest.mark.django_db
def test_the_recorded_url_is_the_host_actually_called(
    settings: Any, drain: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="automation.safehttp")
    with webhook_receiver() as receiver:
        settings.FLOWDESK = {
            **settings.FLOWDESK,
            "WEBHOOK_ALLOW_HOSTS": [f"127.0.0.1:{receiver.port}"],
        }
        receiver.default = Answer(status=200)
        url = f"http://127.0.0.1:{receiver.port}\\@evil.example/hook"
        run = execute(one_step_workflow("backslash", "call_webhook", {"url": url}))
        drain()
    step = step_of(run)
    called = f"http://127.0.0.1:{receiver.port}/%5C@evil.example/hook"
    assert [r.path for r in receiver.requests] == ["/%5C@evil.example/hook"]
    assert step.output["url"] == called and step.progress["delivered"]["url"] == called
    [line] = [r.getMessage() for r in caplog.records if r.name == "automation.safehttp"]
    assert called in line and "http://evil.example" not in line
