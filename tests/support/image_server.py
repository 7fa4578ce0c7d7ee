"""A local HTTP server of test images (and misbehaving URLs) for remote-image fetching tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.media import IMAGE_FORMATS, image_bytes

# Not 127.0.0.1: configs allow exactly this loopback address, so tests can also show 127.0.0.1 refused.
HOST = "127.0.0.2"
BIG = 21 * 1024 * 1024  # over the 20 MB image cap


class _Handler(BaseHTTPRequestHandler):
    images = {f"/image.{fmt}": image_bytes(fmt) for fmt in IMAGE_FORMATS}

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path in self.images:
            self._send(200, self.images[self.path], "image/jpeg")  # a wrong type on purpose: bytes decide
        elif self.path == "/big-no-length":  # no Content-Length: the cap must hold while streaming
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            chunk = image_bytes("png") + b"\0" * (1024 * 1024)
            sent = 0
            while sent < BIG:
                self.wfile.write(chunk)
                sent += len(chunk)
        elif self.path == "/slow":  # a valid start, then a trickle: the time cap must cut it
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.end_headers()
            for _ in range(600):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.1)
        elif self.path == "/to-metadata":
            self._redirect("http://169.254.169.254/latest/meta-data/")
        elif self.path == "/to-image":
            self._redirect("/image.png")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/gzip-if-asked":  # a server that compresses whenever the client accepts it
            import gzip

            if "gzip" in self.headers.get("accept-encoding", ""):
                body = gzip.compress(image_bytes("png"))
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-encoding", "gzip")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self._send(200, image_bytes("png"), "image/png")
        elif self.path == "/text":
            self._send(200, b"<html>not an image</html>", "image/png")
        else:
            self._send(404, b"not found", "text/plain")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("location", location)
        self.send_header("content-length", "0")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class ImageServer:
    def __enter__(self) -> ImageServer:
        self._server = ThreadingHTTPServer((HOST, 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
