"""GET /playground: the browser Chat Playground, static files served by the gateway itself (no CDN)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from serve_app.errors import RouteNotFound

FOLDER = Path(__file__).resolve().parents[2] / "playground"  # serve_app/playground (package data)
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}
# The page may only load what this gateway serves and only talk to this gateway.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class PlaygroundRoute:
    def __init__(self) -> None:
        # Read once: a handful of small files, and no path from the client ever reaches the filesystem.
        self.files = {p.name: (p.read_bytes(), TYPES[p.suffix]) for p in FOLDER.iterdir() if p.suffix in TYPES}

    async def root(self, request: Request) -> Response:
        return RedirectResponse("/playground", status_code=307)

    async def page(self, request: Request) -> Response:
        return self._file("index.html")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.files:
            raise RouteNotFound(request.method, request.url.path)
        return self._file(name)

    def _file(self, name: str) -> Response:
        body, media_type = self.files[name]
        return Response(body, media_type=media_type, headers=SECURITY_HEADERS)
