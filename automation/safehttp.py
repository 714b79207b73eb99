"""Outbound HTTP for the ``call_webhook`` step, guarded against server-side request forgery.

:func:`safe_request` sends one request and returns a :class:`SafeResponse`, or raises a
:class:`DeliveryError` whose ``code`` the caller branches on:

- ``unsafe_url`` (:class:`UnsafeURLError`, never worth retrying): the URL is not
  ``http``/``https``, is malformed, or its host is or resolves to an address that is not
  public: loopback, RFC 1918 private, link-local (including the cloud metadata address
  169.254.169.254), CGNAT shared space, unspecified, multicast, reserved, IPv6
  unique-local or site-local, and those same addresses written as IPv4-mapped,
  IPv4-compatible, 6to4, Teredo or NAT64 IPv6 addresses;
- ``timeout`` (:class:`WebhookTimeout`): connecting, waiting for a byte, or the whole
  exchange took too long;
- ``network_error`` (:class:`NetworkError`): the name did not resolve, the connection
  was refused or reset, TLS failed, or the response was malformed.

How an address is checked, in order:

1. Before any connection, the URL as ``requests`` will send it (after IDNA and
   normalisation) is checked: scheme, host present, and hosts that are addresses by
   themselves (``10.0.0.1``, ``[::1]``, and the spellings the C resolver also accepts,
   such as ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` or ``127.1``) or ``localhost``
   names (RFC 6761). This layer only gives an early, clear error.
2. At connection time, on every attempt, requests-hardened's ``IPFilterAdapter``
   resolves the host, refuses private, loopback, multicast and its extra ranges, and
   pins the connection to the address it checked, so a DNS answer that changes between
   the check and the connection (rebinding) cannot slip through. This is the
   authoritative check. The pinned address then also goes through the stricter
   classification of step 1 (requests-hardened lets IPv4-compatible ``::127.0.0.1``
   and site-local ``fec0::/10`` through).

Hosts named in ``allow_hosts`` skip both address checks (scheme and redirect rules still
apply); compare exact host names or address literals, case-insensitively and ignoring a
final dot (``"127.0.0.1"`` does not allow ``2130706433`` or ``localhost``). An entry is a
host (any port: ``hooks.internal``, ``10.0.0.5``, ``fd00::1``) or a host and one port
(``hooks.internal:8443``, ``[fd00::1]:443``); anything else (a scheme, a path, userinfo,
a wildcard, a bad port) is refused by :func:`parse_allow_hosts` with a message naming the
entry, never ignored.

What is logged and reported as the URL is the URL as the HTTP client sends it
(:func:`sent_url`: after ``requests`` has parsed and normalised it, so
``http://a.test\\@b.test/`` shows as ``http://a.test/%5C@b.test/``, the host actually
called), without userinfo, query or fragment, and with every secret value known to the
process masked (``automation.secrets.mask_known``).

Redirects are never followed: a 3xx comes back as a response. Proxies, ``.netrc`` and
other environment settings are ignored. Userinfo in a URL is sent (as basic auth) but
never logged nor put in an error message.

Time: ``connect_timeout`` bounds the TCP (and TLS) connection, ``read_timeout`` each wait
for data, and ``total_timeout`` the whole exchange from the call to the last body byte:
the response is streamed and the socket's timeout is shrunk to the time left before
every read. Name resolution (``getaddrinfo``) cannot be interrupted and is bounded only
by the system resolver's own timeouts.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import SplitResult, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES, InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs

from automation.secrets import mask_known

__all__ = [
    "ALLOWED_SCHEMES",
    "DeliveryError",
    "NetworkError",
    "SafeResponse",
    "UnsafeURLError",
    "WebhookTimeout",
    "address_category",
    "parse_allow_hosts",
    "redact_url",
    "safe_request",
    "sent_url",
]

logger = logging.getLogger(__name__)

ALLOWED_SCHEMES = frozenset({"http", "https"})
USER_AGENT = "flowdesk-webhooks/0.1"

_READ_CHUNK = 16 * 1024
_METHOD = re.compile(r"[A-Z]{1,16}")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_INET_ATON_FORM = re.compile(r"[0-9][0-9a-fA-FxX.]*")
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_SHARED_V4 = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = tuple(
    ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
_UNIQUE_LOCAL_V6 = ipaddress.ip_network("fc00::/7")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# --------------------------------------------------------------------------- results


class DeliveryError(Exception):
    """A webhook could not be delivered. ``code`` is stable; ``reason`` refines it.

    ``retryable`` says whether the same request may succeed later (timeouts and network
    errors) or never will (an unsafe URL, an invalid request).
    """

    default_code: ClassVar[str] = "delivery_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        reason: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.reason = reason or self.code
        self.data = dict(data or {})


class UnsafeURLError(DeliveryError):
    """The URL may not be called: scheme, malformed URL or a non-public address."""

    default_code = "unsafe_url"


class WebhookTimeout(DeliveryError):
    """Connecting, waiting for data or the whole exchange exceeded its time limit."""

    default_code = "timeout"
    retryable = True


class NetworkError(DeliveryError):
    """Name resolution, the connection, TLS or the HTTP exchange itself failed."""

    default_code = "network_error"
    retryable = True


@dataclass(frozen=True, slots=True)
class SafeResponse:
    """A response as received; ``body`` holds at most ``max_response_bytes`` bytes.

    Header names are lower-cased; repeated headers are joined with ``", "``.
    ``truncated`` is true when the body was longer than the cap and the rest was not
    read. ``elapsed_ms`` runs from the call to the last byte read.
    """

    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    truncated: bool
    elapsed_ms: float
    # The URL as sent (see sent_url): no userinfo, query or fragment.
    url: str = ""


# --------------------------------------------------------------------------- addresses


def address_category(address: Address) -> str | None:
    """Say why ``address`` may not receive webhooks (``"loopback"``...), or ``None``.

    ``None`` means a public unicast address. IPv6 forms that embed an IPv4 address
    (mapped ``::ffff:a.b.c.d``) are judged by that IPv4 address; 6to4, Teredo, NAT64 and
    IPv4-compatible forms are refused whatever they embed.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(address.packed)
        if address.ipv4_mapped is not None:
            category = address_category(address.ipv4_mapped)
            return f"IPv4-mapped {category}" if category else None
        if address.sixtofour is not None:
            return "6to4"
        if address.teredo is not None:
            return "Teredo"
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address in _METADATA_ADDRESSES:
        return "cloud metadata"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address):
        if address in _SHARED_V4:
            return "shared (CGNAT)"
        if any(address in net for net in _RFC1918):
            return "private"
    elif address in _UNIQUE_LOCAL_V6:
        return "unique local"
    elif address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if address.is_private or not address.is_global:
        return "special-purpose"
    if any(address in net for net in EXTRA_BLOCKED_NET_RANGES):
        return "special-purpose"
    return None


def _literal_address(host: str) -> Address | None:
    """The address a host stands for by itself, as the C resolver reads it, or ``None``."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _INET_ATON_FORM.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _normalize_host(host: str) -> str:
    host = host.strip().lower().removeprefix("[").removesuffix("]").removesuffix(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


_ALLOW_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}[A-Za-z0-9_.])?")
_ALLOW_FORMS = (
    "a host name or address, optionally with ':port' "
    "(hooks.internal, 10.0.0.5, hooks.internal:8443, [fd00::1]:443)"
)

AllowList = frozenset[tuple[str, int | None]]


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """``(host, port or None)`` of one allow-list entry; ``ValueError`` naming the entry
    for any other form."""
    text = entry.strip() if isinstance(entry, str) else ""
    host, port_text = text, ""
    if text.startswith("["):
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?", text)
        if match is None:
            raise ValueError(f"allow-list entry {entry!r} is not {_ALLOW_FORMS}")
        host, port_text = match.group(1), match.group(2) or ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text.isascii() or not port_text.isdigit():
            raise ValueError(
                f"allow-list entry {entry!r} has no valid port; it must be {_ALLOW_FORMS}"
            )
    port = int(port_text) if port_text else None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"allow-list entry {entry!r}: the port must be from 1 to 65535")
    normal = _normalize_host(host)
    try:
        ipaddress.ip_address(normal)
    except ValueError:
        if text.startswith("[") or not host.isascii() or not _ALLOW_HOST_NAME.fullmatch(normal):
            raise ValueError(f"allow-list entry {entry!r} is not {_ALLOW_FORMS}") from None
    return normal, port


def parse_allow_hosts(entries: Collection[str]) -> AllowList:
    """The allow-list as ``(host, port or None)`` pairs; ``ValueError`` for a bad entry
    and ``TypeError`` when ``entries`` is a single string."""
    if isinstance(entries, str):
        raise TypeError("allow_hosts must be a collection of host names, not one string")
    return frozenset(parse_allow_entry(entry) for entry in entries)


def _is_allowed(allow: AllowList, host: str, port: int) -> bool:
    host = _normalize_host(host)
    return (host, None) in allow or (host, port) in allow


def _is_localhost_name(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


# --------------------------------------------------------------------------- adapter


class _BlockedAddress(InvalidIPAddress):
    """The pinned address passed requests-hardened's filter but not ours."""


class _GuardedAdapter(IPFilterAdapter):
    """requests-hardened's adapter, with an allow-list and a stricter second check.

    For a host in the allow-list the plain ``HTTPAdapter`` behaviour applies (no filter).
    Otherwise requests-hardened resolves, filters and pins the address, then the pinned
    address is classified by :func:`address_category` as well.
    """

    def __init__(self, *, is_https: bool, allow_hosts: AllowList) -> None:
        super().__init__(is_https_proto=is_https, allow_loopback=False)
        self._allow_hosts = allow_hosts
        self._default_port = 443 if is_https else 80

    def build_connection_pool_key_attributes(
        self,
        request: requests.PreparedRequest,
        verify: bool | str,
        cert: str | tuple[str, str] | None = None,
    ) -> tuple[_HostParams, _PoolKwargs]:
        parts = urlsplit(request.url or "")
        if _is_allowed(self._allow_hosts, parts.hostname or "", parts.port or self._default_port):
            return HTTPAdapter.build_connection_pool_key_attributes(self, request, verify, cert)
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        pinned = ipaddress.ip_address(host_params["host"].strip("[]"))
        if address_category(pinned) is not None:
            raise _BlockedAddress(pinned)
        return host_params, pool_kwargs


class _NoRedirectSession(HTTPSession):
    """requests-hardened's session, minus the look-ahead at redirects.

    Even with ``allow_redirects=False``, ``requests.Session.send`` walks
    ``resolve_redirects`` once to fill ``Response.next``, and that reads the whole body of
    a 3xx response into memory (no size cap, no total deadline). Nothing here uses
    ``Response.next``, so there is nothing to resolve.
    """

    def resolve_redirects(self, *args: object, **kwargs: object) -> Iterator[Any]:
        return iter(())


def _session(allow_hosts: AllowList) -> requests.Session:
    session = _NoRedirectSession(
        Config(
            ip_filter_enable=True,
            ip_filter_allow_loopback_ips=False,
            never_redirect=True,
            default_timeout=(5, 10),
        )
    )
    session.mount("http://", _GuardedAdapter(is_https=False, allow_hosts=allow_hosts))
    session.mount("https://", _GuardedAdapter(is_https=True, allow_hosts=allow_hosts))
    session.trust_env = False
    session.proxies.clear()
    session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    return session


# --------------------------------------------------------------------------- request


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int

    @property
    def label(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def sent_url(url: str) -> str:
    """``url`` as the HTTP client will send it (parsed and normalised by ``requests``),
    without userinfo, query or fragment: what logs and run records show."""
    prepared = requests.PreparedRequest()
    try:
        prepared.prepare_url(url, None)
    except (requests.exceptions.RequestException, ValueError, UnicodeError):
        return "<invalid url>"
    return redact_url(prepared.url or "")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no userinfo, query or fragment (for logs)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return SplitResult(parts.scheme, netloc, parts.path, "", "").geturl()


def _check_arguments(
    method: str,
    headers: Mapping[str, str] | None,
    limits: Mapping[str, float],
) -> str:
    for name, limit in limits.items():
        if limit < 0 or (limit == 0 and name != "max_response_bytes"):
            raise ValueError(f"{name} must be positive, got {limit!r}")
    verb = method.strip().upper()
    if not _METHOD.fullmatch(verb):
        raise DeliveryError(
            "the HTTP method must be a single word such as POST",
            code="invalid_request",
        )
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise DeliveryError(
                f"header name {name!r} is not a valid HTTP token", code="invalid_request"
            )
        if not isinstance(value, str) or any(char in value for char in "\r\n\0"):
            raise DeliveryError(
                f"header {name!r} must be a string without CR, LF or NUL",
                code="invalid_request",
                data={"header": name},
            )
    return verb


def _prepare(
    session: requests.Session,
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    body: bytes | None,
) -> tuple[requests.PreparedRequest, _Target]:
    """Prepare the request as it will be sent, and check its URL before any connection."""
    try:
        prepared = session.prepare_request(
            requests.Request(method, url, headers=dict(headers or {}), data=body)
        )
        parts = urlsplit(prepared.url or "")
        host = parts.hostname or ""
        port = parts.port
    except requests.exceptions.InvalidHeader as exc:
        raise DeliveryError("a header is not valid", code="invalid_request") from exc
    except (requests.exceptions.RequestException, ValueError, UnicodeError) as exc:
        raise UnsafeURLError(
            "not a valid URL (scheme, host or port)", reason="invalid_url"
        ) from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(
            f"scheme {scheme or '(none)'!r} is not allowed; use http or https",
            reason="scheme_not_allowed",
            data={"scheme": scheme},
        )
    if not host:
        raise UnsafeURLError("the URL has no host", reason="invalid_url")
    target = _Target(scheme, host, port or (443 if scheme == "https" else 80))
    return prepared, target


def _precheck(target: _Target, allow_hosts: AllowList) -> None:
    """Refuse literal non-public addresses and ``localhost`` names without connecting."""
    host = _normalize_host(target.host)
    if _is_allowed(allow_hosts, host, target.port):
        return
    if _is_localhost_name(host):
        category: str | None = "loopback"
    else:
        literal = _literal_address(host)
        category = address_category(literal) if literal is not None else None
    if category is not None:
        raise _unsafe_address(target, category, resolved=False)


def _unsafe_address(target: _Target, category: str, *, resolved: bool) -> UnsafeURLError:
    verb = "resolves to" if resolved else "is"
    article = "an" if category[0].lower() in "aeiou" else "a"
    return UnsafeURLError(
        f"host {target.host!r} {verb} {article} {category} address; "
        "webhooks may only call public addresses",
        reason="blocked_address",
        data={
            "host": target.host,
            "category": category,
            "checked": "connect" if resolved else "url",
        },
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and the errors requests and urllib3 wrap in ``args``."""
    seen: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(item for item in linked if isinstance(item, BaseException))
    return seen


def _send(
    session: requests.Session,
    prepared: requests.PreparedRequest,
    target: _Target,
    *,
    connect_timeout: float,
    read_timeout: float,
    deadline: float,
) -> requests.Response:
    remaining = max(deadline - time.monotonic(), 0.001)
    timeout = urllib3.Timeout(
        connect=min(connect_timeout, remaining), read=min(read_timeout, remaining), total=remaining
    )
    try:
        # HTTPAdapter.send takes a urllib3 Timeout; the requests stubs allow only numbers.
        return session.send(
            prepared,
            stream=True,
            allow_redirects=False,
            timeout=timeout,  # type: ignore[arg-type]
        )
    except InvalidIPAddress as exc:
        address = exc.args[0] if exc.args else None
        category = None
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            category = address_category(address)
        raise _unsafe_address(target, category or "non-public", resolved=True) from exc
    except requests.exceptions.ConnectTimeout as exc:
        raise WebhookTimeout(
            f"timed out connecting to {target.label}", reason="connect_timeout"
        ) from exc
    except requests.exceptions.Timeout as exc:
        raise _read_timeout(target, deadline) from exc
    except requests.exceptions.SSLError as exc:
        raise NetworkError(f"TLS with {target.label} failed", reason="tls_error") from exc
    except requests.exceptions.InvalidURL as exc:
        raise UnsafeURLError("not a valid URL (host or port)", reason="invalid_url") from exc
    except requests.exceptions.RequestException as exc:
        raise _network_error(target, exc) from exc


def _network_error(target: _Target, exc: BaseException) -> NetworkError:
    causes = _chain(exc)
    if any(isinstance(cause, socket.gaierror) for cause in causes):
        return NetworkError(f"could not resolve host {target.host!r}", reason="dns_error")
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return NetworkError(
            f"connection to {target.label} was refused", reason="connection_refused"
        )
    if any(isinstance(cause, ConnectionResetError) for cause in causes):
        return NetworkError(f"connection to {target.label} was reset", reason="connection_reset")
    return NetworkError(
        f"the exchange with {target.label} failed ({type(exc).__name__})",
        reason="connection_error",
    )


def _read_timeout(target: _Target, deadline: float) -> WebhookTimeout:
    if time.monotonic() >= deadline - 0.001:
        return WebhookTimeout(
            f"{target.label} did not finish answering within the total timeout",
            reason="total_timeout",
        )
    return WebhookTimeout(f"{target.label} stopped sending data", reason="read_timeout")


def _socket_of(response: requests.Response) -> socket.socket | None:
    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _read_capped(
    response: requests.Response,
    target: _Target,
    *,
    read_timeout: float,
    deadline: float,
    limit: int,
) -> tuple[bytes, bool]:
    """Read at most ``limit + 1`` bytes, each read bounded by the time left."""
    raw: urllib3.BaseHTTPResponse = response.raw
    sock = _socket_of(response)
    buffer = bytearray()
    while len(buffer) <= limit:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _read_timeout(target, deadline)
        if sock is not None:
            sock.settimeout(min(read_timeout, remaining))
        try:
            chunk = raw.read1(min(_READ_CHUNK, limit + 1 - len(buffer)), decode_content=True)
        except (urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
            raise _read_timeout(target, deadline) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise NetworkError(
                f"{target.label} sent a body that could not be decoded", reason="decode_error"
            ) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _network_error(target, exc) from exc
        if not chunk:
            break
        buffer += chunk
    return bytes(buffer[:limit]), len(buffer) > limit


def safe_request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    connect_timeout: float = 5,
    read_timeout: float = 10,
    total_timeout: float = 30,
    max_response_bytes: int = 64 * 1024,
    allow_hosts: Collection[str] = (),
) -> SafeResponse:
    """Send one HTTP request to a public address and read a capped response.

    See the module documentation for what is refused and how time is bounded. Raises
    :class:`UnsafeURLError`, :class:`WebhookTimeout` or :class:`NetworkError` (all
    :class:`DeliveryError`), a ``DeliveryError`` with code ``invalid_request`` for a bad
    method or header, ``ValueError`` for a non-positive limit or an allow-list entry of an
    unknown form (:func:`parse_allow_hosts`) and ``TypeError`` when ``allow_hosts`` is a
    single string. Any status, 3xx
    included, is a :class:`SafeResponse`, not an error.
    """
    started = time.monotonic()
    verb = _check_arguments(
        method,
        headers,
        {
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "total_timeout": total_timeout,
            "max_response_bytes": max_response_bytes,
        },
    )
    allowed = parse_allow_hosts(allow_hosts)
    deadline = started + total_timeout
    shown = mask_known(sent_url(url))
    with _session(allowed) as session:
        try:
            prepared, target = _prepare(session, verb, url, headers, body)
            shown = mask_known(redact_url(prepared.url or ""))
            _precheck(target, allowed)
            response = _send(
                session,
                prepared,
                target,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                deadline=deadline,
            )
        except DeliveryError as exc:
            logger.warning(
                "webhook %s %s refused or failed: %s (%s)",
                verb,
                shown,
                mask_known(exc.message),
                exc.code,
            )
            raise
        try:
            content, truncated = _read_capped(
                response,
                target,
                read_timeout=read_timeout,
                deadline=deadline,
                limit=max_response_bytes,
            )
        except DeliveryError as exc:
            logger.warning(
                "webhook %s %s failed: %s (%s)", verb, shown, mask_known(exc.message), exc.code
            )
            raise
        finally:
            response.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info(
        "webhook %s %s -> %s in %.0f ms%s",
        verb,
        shown,
        response.status_code,
        elapsed_ms,
        " (response truncated)" if truncated else "",
    )
    return SafeResponse(
        status=response.status_code,
        headers={name.lower(): value for name, value in response.headers.items()},
        body=content,
        truncated=truncated,
        elapsed_ms=elapsed_ms,
        url=shown,
    )
