"""The retrieval server's allowed-Host check.

A server on loopback is still reachable from a web page in the user's browser: a page
on ``evil.example`` can make its name resolve to 127.0.0.1 (DNS rebinding) and then read
the answers as same-origin. The browser still sends ``Host: evil.example``, so answering
only requests whose Host names this server (loopback names by default) closes that door.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from crosearch.retrieval.limits import error_response

#: Bind addresses that are not names a client could use in a Host header.
_WILDCARD_BINDS = {"", "0.0.0.0", "::"}


def host_name(header: str) -> str:
    """The name or address of a Host header value, without port, brackets or trailing dot, lower-cased."""
    value = header.strip().lower()
    if value.startswith("["):  # [v6]:port
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:  # name:port or v4:port; a bare v6 address has several colons
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def allowed_host_names(allowed: Iterable[str], bind: str | None = None) -> frozenset[str]:
    """The normalised names to accept: ``allowed`` plus the concrete address the server binds."""
    names = {host_name(h) if h != "*" else "*" for h in allowed}
    if bind is not None and bind not in _WILDCARD_BINDS:
        names.add(host_name(bind if ":" not in bind or bind.startswith("[") else f"[{bind}]"))
    return frozenset(names)


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    name = host_name(host if ":" not in host or host.startswith("[") else f"[{host}]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostCheckMiddleware:
    """Answer 400 to any HTTP request whose Host header is missing or not an allowed name."""

    def __init__(self, app: ASGIApp, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed
        self.any_host = "*" in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any_host:
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), None)
        name = host_name(raw.decode("latin-1")) if raw is not None else None
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = "none" if raw is None else repr(raw.decode("latin-1")[:100])
        response = error_response(
            400,
            f"Host header {shown} is not one this server answers to; allowed: {', '.join(sorted(self.allowed))} "
            "(server.allowed_hosts)",
        )
        response.headers["connection"] = "close"
        await response(scope, receive, send)
