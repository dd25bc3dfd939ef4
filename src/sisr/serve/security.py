"""Who may call the server: the bearer token, and, without one, this machine's own pages only.

* With `--token`, every API route but the health check and the schema needs
  `Authorization: Bearer TOKEN` (401 otherwise). The page itself holds no
  data and is served to anyone; it sends the token it reads from its URL.
* Without a token on a loopback address, a request must name a loopback host
  (`Host: 127.0.0.1:8000`, `localhost`, `[::1]`): a web page elsewhere that
  points a host name of its own at 127.0.0.1 (DNS rebinding) is refused.
* Requests that change something (POST, DELETE) carrying an `Origin` other
  than the server's own are refused: another site open in the same browser
  cannot queue work or cancel jobs.
"""

from __future__ import annotations

import hmac
import urllib.parse
from typing import Any

from starlette.datastructures import Headers

from .http_errors import error_response
from .settings import ServeSettings, is_loopback

# Open without the token: a liveness probe, and the schema (it describes the routes, holds no data).
PUBLIC_API_PATHS = ("/api/v1/health", "/api/v1/openapi.json")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AccessGuard:
    """ASGI middleware: answers 401 / 403 itself, before any route (or upload) is touched."""

    def __init__(self, app: Any, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            refusal = self.refusal(scope, Headers(scope=scope))
            if refusal is not None:
                status, message, headers = refusal
                await error_response(status, message, headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict[str, Any], headers: Headers) -> tuple[int, str, dict[str, str] | None] | None:
        host = headers.get("host", "")
        if self.settings.loopback_only and not is_loopback(_host_name(host)):
            return (
                403,
                f"Host {host!r}: this server answers for localhost only (start it with --token to allow more)",
                None,
            )
        origin = headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin is not None and urllib.parse.urlsplit(origin).netloc != host:
            return 403, f"Origin {origin!r}: requests from other sites are refused", None
        path = scope["path"]
        if self.settings.token and path.startswith("/api/") and path not in PUBLIC_API_PATHS:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.settings.token.encode()
            ):
                what = "wrong" if given else "missing"
                return (
                    401,
                    f"{what} token: send the server's token as `Authorization: Bearer TOKEN`",
                    {"WWW-Authenticate": "Bearer"},
                )
        return None


def _host_name(host: str) -> str:
    """`[::1]:8000` -> `::1`, `localhost:8000` -> `localhost`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
