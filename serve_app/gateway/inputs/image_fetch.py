"""Fetch remote images for chat messages without becoming an SSRF proxy.

Every hop (redirects included) is resolved here and each address checked: loopback, private, link-local
(cloud metadata at 169.254.169.254), multicast and reserved addresses are refused unless the config allows
them. The connection then goes to the checked address itself (Host header and TLS SNI keep the name), so a
second DNS answer cannot swap in an internal address. Size is capped while streaming, time over the whole
fetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

from serve_app.errors import InvalidRequest
from serve_app.gateway.body import read_stream_capped
from serve_app.gateway.inputs.images import image_too_large

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Name lookups block a thread for as long as DNS takes, and a timed-out fetch cannot stop its lookup: in threads
# of their own, slow names stall other image fetches at worst, not the event loop's shared pool (image
# decoding, file writes, replica counts).
RESOLVER_THREADS = 4

# IPv6 ranges that carry or translate IPv4 (or are deprecated), refused whatever they embed: a NAT64 gateway,
# a 6to4 relay or a Teredo server could otherwise reach an internal IPv4 address on our behalf.
_SPECIAL_V6 = [ipaddress.ip_network(n) for n in (
    "64:ff9b::/96",  # NAT64 well-known prefix
    "64:ff9b:1::/48",  # NAT64 local-use prefix
    "2002::/16",  # 6to4
    "2001::/32",  # Teredo
    "::/96",  # IPv4-compatible (deprecated)
    "fec0::/10",  # site-local (deprecated)
    "100::/64",  # discard-only
)]


class ImageFetcher:
    def __init__(self, max_bytes: int, timeout_s: float, max_redirects: int, allow: list[str]) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.allowed_networks = [ipaddress.ip_network(a, strict=False) for a in allow if _is_network(a)]
        self.allowed_hosts = {a.lower() for a in allow if not _is_network(a)}
        # No environment proxies: a proxy would connect to names we did not check. `identity`: the bytes are read
        # raw and capped as they arrive, so a server must not gzip them (nor pack a decompression bomb).
        self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=httpx.Timeout(timeout_s),
                                         headers={"accept": "image/*", "accept-encoding": "identity"})
        self._resolver = ThreadPoolExecutor(RESOLVER_THREADS, thread_name_prefix="image-url-dns")

    async def fetch(self, url: str, param: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url, param)
        except TimeoutError:
            reason = f"the image at {_shown(url)} did not arrive within {self.timeout_s:g} s"
            raise _fetch_error(reason, param) from None
        except httpx.HTTPError as exc:
            raise _fetch_error(f"the image at {_shown(url)} could not be fetched ({type(exc).__name__})",
                               param) from None

    async def _follow(self, url: str, param: str) -> bytes:
        for _ in range(self.max_redirects + 1):
            target = _parsed(url, param)
            address = await self._checked_address(target, param)
            pinned = target.copy_with(host=str(address))
            host_header = target.host if target.port is None else f"{target.host}:{target.port}"
            request = self._client.build_request("GET", pinned, headers={"host": host_header},
                                                 extensions={"sni_hostname": target.host})
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect and "location" in response.headers:
                    url = _joined(target, response.headers["location"], param)
                    continue
                if response.status_code != 200:
                    raise _fetch_error(f"{_shown(url)} answered HTTP {response.status_code}", param)
                return await self._read_capped(response, param)
            finally:
                await response.aclose()
        raise _fetch_error(f"more than {self.max_redirects} redirects from {_shown(url)}", param)

    async def _read_capped(self, response: httpx.Response, param: str) -> bytes:
        return await read_stream_capped(response.aiter_raw(), response.headers.get("content-length"), self.max_bytes,
                                        image_too_large(self.max_bytes, param))

    async def _checked_address(self, url: httpx.URL, param: str) -> Address:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().run_in_executor(
                self._resolver, socket.getaddrinfo, url.host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError):  # UnicodeError: a name the IDNA codec refuses (empty or long labels)
            raise _fetch_error(f"the host {_printable(url.host)!r} could not be resolved", param) from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        # Every answer must pass: otherwise a name with one public and one internal address slips through.
        for address in addresses:
            if not self._allowed(url.host.lower(), address):
                raise InvalidRequest(
                    f"Image URL refused: {url.host} resolves to a private, loopback, link-local or reserved address.",
                    param=param, code="invalid_image_url")
        return addresses[0]

    def _allowed(self, host: str, address: Address) -> bool:
        if host in self.allowed_hosts or any(address in net for net in self.allowed_networks):
            return True
        return is_public_address(address)

    async def aclose(self) -> None:
        await self._client.aclose()
        self._resolver.shutdown(wait=False, cancel_futures=True)


def is_public_address(address: Address) -> bool:
    """A global unicast address that embeds no internal one (IPv4-mapped, 6to4, Teredo, NAT64 are refused or
    judged by the IPv4 address they carry)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [a for a in (address.ipv4_mapped, address.sixtofour, address.teredo and address.teredo[1]) if a]
        if any(not is_public_address(a) for a in embedded):
            return False
        if address.ipv4_mapped is not None:
            return is_public_address(address.ipv4_mapped)
        if any(address in net for net in _SPECIAL_V6):
            return False
    return address.is_global and not address.is_multicast


def _parsed(url: str, param: str) -> httpx.URL:
    """An http(s) URL with a host, or a 400: every parse failure (bad IPv6 brackets, octal IPv4, empty or
    over-long labels, invalid IDNA, control characters) is the client's error."""
    try:
        target = httpx.URL(url)
        host = target.host
    except (httpx.InvalidURL, ValueError, UnicodeError):  # UnicodeError: IDNA labels empty or too long
        raise InvalidRequest(f"Invalid image URL: {_shown(url)}", param=param, code="invalid_image_url") from None
    if target.scheme not in ("http", "https") or not host:
        raise InvalidRequest("Image URLs must be http(s):// addresses or data:image/...;base64 URIs.",
                             param=param, code="invalid_image_url")
    return target


def _joined(base: httpx.URL, location: str, param: str) -> str:
    try:
        return str(base.join(location))
    except (httpx.InvalidURL, ValueError, UnicodeError):
        raise _fetch_error("the server redirected to an invalid URL", param) from None


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
        return True
    except ValueError:
        return False


def _shown(url: str) -> str:
    """The URL as echoed in errors: without query string or credentials, short, and printable."""
    try:
        shown = str(httpx.URL(url).copy_with(query=None, fragment=None, userinfo=b""))
    except (httpx.InvalidURL, ValueError, UnicodeError):
        shown = url.split("?", 1)[0].rsplit("@", 1)[-1] if "://" not in url else url.split("?", 1)[0]
    return _printable(shown)[:200]


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _fetch_error(reason: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Failed to fetch the image: {reason}.", param=param, code="invalid_image_url")
