"""Outbound HTTP for imports: fetch a URL from public addresses only, connected to the very address that was checked.

An import names URLs that a stranger wrote (an affiliate feed), and the worker fetches them from inside the
network, so every hop is checked before a socket is opened (server-side request forgery):

- the scheme is http or https;
- the host is resolved once (getaddrinfo) and refused if any of its addresses is not global (loopback,
  private, link-local such as 169.254.169.254, multicast, reserved, unspecified, carrier-grade NAT; an
  IPv4-mapped IPv6 address is judged by its IPv4 address), unless the host name is in `allowed_hosts`;
- the connection goes to one of the addresses just checked, never through a second lookup, so a name that
  answers a public address to the check and a private one to the connect (DNS rebinding) gains nothing;
  HTTPS still verifies the certificate against the host name (SNI);
- redirects are followed here, at most MAX_REDIRECTS, each one checked as above.

Errors say nothing a port scan could use: a refused address and a closed, filtered or silent port all read
the same to the caller (OutboundRefused, or OutboundFailed whose text is fixed); only a public (or allowed)
host that answered in HTTP gets its status code reported (OutboundStatus).
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from urllib.parse import SplitResult, quote, urljoin, urlsplit

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
NOT_PUBLIC = "not a public address"
NOT_A_URL = "not a valid URL"
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


class OutboundError(Exception):
    """An outbound fetch did not happen; the message is safe to show in an import report."""


class OutboundRefused(OutboundError):
    """The URL is refused before any connection: a scheme other than http(s), or a host that is not public."""


class OutboundFailed(OutboundError):
    """No HTTP answer (DNS failure, refused, reset, timed out, TLS, too many redirects): one message for all."""

    def __init__(self) -> None:
        super().__init__("could not be fetched")


class OutboundStatus(OutboundError):
    """A public (or allowed) host answered with an HTTP status other than success or a redirect."""

    def __init__(self, status: int):
        super().__init__(f"HTTP {status}")
        self.status = status


def address_is_public(address: str) -> bool:
    """Whether an IP address (text, IPv4 or IPv6, with or without a %scope) is globally reachable."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 address: judge it instead (Python 3.11
        # calls ::ffff:127.0.0.1 neither loopback nor private, and 2002:7f00:1:: global).
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in NAT64_PREFIX:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        ip = embedded or ip
    special = (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
               or ip.is_unspecified)
    return ip.is_global and not special


def host_names_normalise(names: Collection[str]) -> frozenset[str]:
    """Lower-case host names without a trailing dot, as they are compared with a URL's host."""
    return frozenset(name.strip().lower().rstrip(".") for name in names if name.strip())


def _port(parts: SplitResult) -> int:
    """The URL's port, or its scheme's; raise ValueError for a port out of range or not a number."""
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def url_scheme_check(url: str) -> SplitResult:
    """Return the URL's parts; raise OutboundRefused for a scheme other than http or https, or no usable host."""
    try:
        parts = urlsplit(url.strip())
        _port(parts)
    except ValueError:  # 'http://[::1' (an unclosed IPv6 literal), a port out of range or not a number
        raise OutboundRefused(NOT_A_URL) from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise OutboundRefused(f"scheme {scheme!r} is not allowed (http or https only)")
    if not parts.hostname:
        raise OutboundRefused(NOT_A_URL)
    return parts


def _addresses_checked(parts: SplitResult, *, allowed_hosts: frozenset[str]) -> list[tuple]:
    """Resolve the URL's host once; return its getaddrinfo entries, all of them public unless the host is allowed."""
    host = parts.hostname.rstrip(".")
    try:
        entries = socket.getaddrinfo(host, _port(parts), type=socket.SOCK_STREAM)
    except (OSError, ValueError):  # socket.gaierror is an OSError; a name idna cannot encode a UnicodeError
        raise OutboundFailed() from None
    if not entries:
        raise OutboundFailed()
    if host not in allowed_hosts and not all(address_is_public(entry[4][0]) for entry in entries):
        raise OutboundRefused(NOT_PUBLIC)
    return entries


def _socket_connect(entries: list[tuple], *, timeout: float) -> socket.socket:
    """Connect to the first of the checked addresses that answers (no name lookup happens here)."""
    for family, kind, proto, _name, address in entries:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError:
            sock.close()
            continue
        return sock
    raise OutboundFailed()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to addresses resolved and checked beforehand; the Host header keeps the URL's name."""

    def __init__(self, host: str, port: int, *, entries: list[tuple], timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._entries = entries

    def connect(self) -> None:
        self.sock = _socket_connect(self._entries, timeout=self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """The HTTPS twin of _PinnedHTTPConnection: TLS with SNI and certificate checks against the URL's name."""

    def __init__(self, host: str, port: int, *, entries: list[tuple], timeout: float):
        super().__init__(host, port, timeout=timeout, context=_tls_context())
        self._entries = entries

    def connect(self) -> None:
        sock = _socket_connect(self._entries, timeout=self.timeout)
        try:
            self.sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The system's trusted certificates, loaded once (an SSLContext is safe to share between threads)."""
    return ssl.create_default_context()


def _request_target(parts: SplitResult) -> str:
    """The path and query to send, percent-encoding what http.client refuses (spaces, non-ASCII)."""
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
    return path + ("?" + quote(parts.query, safe="/%:@!$&'()*+,;=~?") if parts.query else "")


def _hop(parts: SplitResult, *, allowed_hosts: frozenset[str], deadline: float,
         headers: dict[str, str]) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """Check, connect and send one request; return the connection and its response (headers read)."""
    entries = _addresses_checked(parts, allowed_hosts=allowed_hosts)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise OutboundFailed()
    connection_class = _PinnedHTTPSConnection if parts.scheme.lower() == "https" else _PinnedHTTPConnection
    connection = connection_class(parts.hostname.rstrip("."), _port(parts), entries=entries, timeout=remaining)
    try:
        connection.request("GET", _request_target(parts), headers=headers)
        return connection, connection.getresponse()
    except (OSError, http.client.HTTPException, ValueError, UnicodeError):
        # Refused, reset, timed out, TLS, not HTTP: told apart, they would map the ports behind the host.
        connection.close()
        raise OutboundFailed() from None


@contextmanager
def public_url_open(url: str, *, deadline: float, allowed_hosts: Collection[str] = (),
                    headers: dict[str, str] | None = None) -> Iterator[http.client.HTTPResponse]:
    """Open a GET on `url` from public addresses only, following redirects; yield the 2xx response to read.

    `deadline` is a time.monotonic() value that bounds connecting and every socket operation after it.
    Raise OutboundRefused, OutboundFailed or OutboundStatus (see the module docstring); reading the body
    may still raise OSError (TimeoutError) or http.client.HTTPException.
    """
    allowed = host_names_normalise(allowed_hosts)
    headers = {"User-Agent": "labelapp-import/1", **(headers or {})}
    current = url.strip()
    for _ in range(MAX_REDIRECTS + 1):
        parts = url_scheme_check(current)
        connection, response = _hop(parts, allowed_hosts=allowed, deadline=deadline, headers=headers)
        try:
            location = response.getheader("Location")
            if response.status in REDIRECT_STATUSES and location:
                current = urljoin(current, location.strip())
                continue
            if not 200 <= response.status < 300:
                raise OutboundStatus(response.status)
            yield response
            return
        finally:
            response.close()
            connection.close()
    raise OutboundFailed()
