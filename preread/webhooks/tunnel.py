"""Webhook deliveries through an HTTP proxy, still to the checked address.

A hospital's outbound traffic often has to pass an HTTP proxy (``PREREAD_WEBHOOK_PROXY``).
The deliverer connects to the address it checked (:mod:`preread.webhooks.addresses`: DNS
rebinding cannot move a delivery to a refused address), so a proxy must not resolve the name
itself. httpx's own proxy support cannot do both for https: its tunnel verifies the TLS
certificate against the host it tunnels to, which is the pinned address, not the name
(httpcore ``TunnelHTTPConnection`` ignores the request's ``sni_hostname``).

Here every TCP connection the deliverer opens is tunnelled instead: :class:`ConnectTunnel`, an
httpcore network backend, connects to the proxy and sends ``CONNECT <checked address>:<port>``;
TLS (for https) then runs end to end inside the tunnel, with the name as SNI and checked
against the certificate, exactly as without a proxy. Plain http goes through the same tunnel.
The proxy's ACL must allow CONNECT to the receivers' ports. A proxy that refuses
(not 2xx) fails the attempt as unreachable, and it is retried on the schedule.
"""

from __future__ import annotations

import base64
import ssl
import typing
from urllib.parse import unquote, urlsplit

import httpcore
import httpx

MAX_RESPONSE_HEAD = 16_384


class ProxyUrlError(ValueError):
    """``PREREAD_WEBHOOK_PROXY`` is not ``http://[user:password@]host:port``."""


class ConnectTunnel(httpcore.NetworkBackend):
    """Connects to ``host:port`` through an HTTP proxy's ``CONNECT`` (see the module)."""

    def __init__(self, proxy_url: str, inner: httpcore.NetworkBackend | None = None) -> None:
        parts = urlsplit(proxy_url)
        if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
            raise ProxyUrlError(
                f"the webhook proxy must be http://[user:password@]host:port, got "
                f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
            )
        try:
            port = parts.port or 80
        except ValueError as exc:  # a port that is not a number
            raise ProxyUrlError(f"the webhook proxy's port is not a number: {exc}") from None
        self.host, self.port = parts.hostname, port
        self._authorization: bytes | None = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._authorization = b"Basic " + base64.b64encode(pair)
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            self.host, self.port, timeout, local_address, socket_options
        )
        try:
            target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n".encode("ascii")
            if self._authorization is not None:
                head += b"Proxy-Authorization: " + self._authorization + b"\r\n"
            stream.write(head + b"\r\n", timeout)
            status = _connect_status(stream, timeout)
        except BaseException:
            stream.close()
            raise
        if not 200 <= status < 300:
            stream.close()
            raise httpcore.ProxyError(f"the webhook proxy refused CONNECT: HTTP {status}")
        return stream

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhook deliveries never use unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _connect_status(stream: httpcore.NetworkStream, timeout: float | None) -> int:
    """The status of the proxy's answer to CONNECT; its head is read whole, nothing after it
    (the receiver speaks only once the tunnel carries our first bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = stream.read(1, timeout)  # byte by byte: never read into the tunnel
        if not chunk:
            raise httpcore.ProxyError("the webhook proxy closed the connection during CONNECT")
        data += chunk
        if len(data) > MAX_RESPONSE_HEAD:
            raise httpcore.ProxyError("the webhook proxy's answer to CONNECT is too long")
    words = data.split(b"\r\n", 1)[0].split()
    if len(words) < 2 or not words[0].startswith(b"HTTP/") or not words[1].isdigit():
        raise httpcore.ProxyError("the webhook proxy's answer to CONNECT is not HTTP")
    return int(words[1])


class _TunnelTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool on :class:`ConnectTunnel`.

    httpx has no public way to give its transport a network backend; the pool is replaced
    after construction (``_pool``, the attribute every httpx transport uses for it), which
    keeps httpx's request and response mapping and its error types."""

    def __init__(self, proxy_url: str, context: ssl.SSLContext) -> None:
        tunnel = ConnectTunnel(proxy_url)  # ProxyUrlError before anything is built
        super().__init__(verify=context, trust_env=False)
        self._pool = httpcore.ConnectionPool(ssl_context=context, network_backend=tunnel)


def webhook_client(proxy_url: str | None, *, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """The deliverer's HTTP client: direct, or every connection tunnelled through
    ``proxy_url`` (``PREREAD_WEBHOOK_PROXY``). Redirects are never followed. The environment's
    ``HTTP(S)_PROXY`` are ignored (httpx's proxying would check an https receiver's certificate
    against the pinned address and fail); its ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` count.

    Raises:
        ProxyUrlError: ``proxy_url`` is not ``http://[user:password@]host:port``.
    """
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    if proxy_url is None:
        return httpx.Client(follow_redirects=False, verify=context, trust_env=False)
    return httpx.Client(
        follow_redirects=False, transport=_TunnelTransport(proxy_url, context), trust_env=False
    )
