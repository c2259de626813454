"""HTTP client for outgoing webhooks, with the SSRF guard.

A target URL must be `https` (plain `http` only for allow-listed development hosts), carry no
credentials, and every address its host resolves to must be public: loopback, private, link-local
(cloud metadata 169.254.169.254), shared, multicast, reserved and unspecified addresses are refused, IPv4
mapped in IPv6 included. The check runs at registration and again at every send: the connection goes to
the address just checked (pinned, with the original `Host` and TLS server name), so a DNS answer that
changes between check and connect cannot redirect it. Redirects are never followed. `allowed_hosts`
(host names, addresses or CIDR networks) lifts the address check for local development and tests.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

from integrations.errors import RejectedError, TransientError

SYSTEM = "webhook"
MAX_URL_LENGTH = 2000
MAX_RESPONSE_BYTES = 64 * 1024
RESOLVE_TIMEOUT_S = 3.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRejected(RejectedError):
    """The URL is not an acceptable webhook target (scheme, credentials, private address…)."""

    kind = "target_rejected"

    def __init__(self, message: str) -> None:
        super().__init__(SYSTEM, "target_rejected", message)


@dataclass(frozen=True)
class AllowList:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, values: list[str]) -> AllowList:
        hosts: set[str] = set()
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for value in values:
            value = value.strip().lower()
            if not value:
                continue
            try:
                networks.append(ipaddress.ip_network(value, strict=False))
            except ValueError:
                hosts.add(value.rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_ip(self, ip: IPAddress) -> bool:
        return any(ip in network for network in self.networks)


def is_public_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public_address(mapped)
        if ip.teredo is not None:
            return False
    return bool(
        ip.is_global
        and not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )
    )


def parse_target(url: str, allow: AllowList) -> SplitResult:
    """Syntax and scheme checks (no DNS)."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or any(c.isspace() for c in url):
        raise TargetRejected("URL absente, trop longue ou contenant des espaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRejected("URL invalide") from exc
    host = parts.hostname
    if parts.scheme not in ("https", "http") or not host:
        raise TargetRejected("l'URL doit être https://hôte/…")
    if parts.username is not None or parts.password is not None:
        raise TargetRejected("l'URL ne doit pas contenir d'identifiants")
    if parts.fragment:
        raise TargetRejected("l'URL ne doit pas contenir de fragment")
    if port == 0:
        raise TargetRejected("port invalide")
    if parts.scheme == "http" and not _allow_listed(host, allow):
        raise TargetRejected("seules les URL https sont acceptées")
    return parts


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _allow_listed(host: str, allow: AllowList) -> bool:
    literal = _literal(host)
    return allow.allows_host(host) or (literal is not None and allow.allows_ip(literal))


async def resolve_target(parts: SplitResult, allow: AllowList, timeout_s: float = RESOLVE_TIMEOUT_S) -> str:
    """The address to connect to, after checking every address the host resolves to."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP), timeout_s
            )
        except (TimeoutError, OSError, UnicodeError) as exc:
            raise TargetRejected(f"nom d'hôte introuvable : {host}") from exc
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not addresses:
            raise TargetRejected(f"nom d'hôte introuvable : {host}")
    host_allowed = allow.allows_host(host)
    for address in addresses:
        if not (host_allowed or allow.allows_ip(address) or is_public_address(address)):
            raise TargetRejected(f"adresse non publique refusée ({address})")
    return str(addresses[0])


@dataclass(frozen=True)
class WebhookResponse:
    status_code: int
    body: bytes
    duration_ms: int

    def json(self) -> Any:
        import json

        return json.loads(self.body.decode("utf-8", errors="replace"))


class WebhookSender:
    """POSTs a signed JSON body to a checked, pinned address. Transport failures and timeouts raise
    `TransientError`; any HTTP answer is returned (the caller decides what a non-2xx means)."""

    def __init__(self, timeout_s: float, allowed_hosts: list[str], transport: httpx.AsyncBaseTransport | None = None):
        self._timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0))
        self._allow = AllowList.parse(allowed_hosts)
        self._transport = transport

    @property
    def allow_list(self) -> AllowList:
        return self._allow

    async def check(self, url: str) -> str:
        """Registration-time check: syntax, scheme and addresses. Returns the address."""
        return await resolve_target(parse_target(url, self._allow), self._allow)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> WebhookResponse:
        parts = parse_target(url, self._allow)
        address = await resolve_target(parts, self._allow)
        host = parts.hostname or ""
        netloc = f"[{address}]" if ":" in address else address
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        request_headers = {
            **headers,
            "Host": parts.netloc.rsplit("@", 1)[-1],
            "Content-Type": "application/json",
            "User-Agent": "simflow-webhooks/1",
        }
        extensions = {"sni_hostname": host} if parts.scheme == "https" and _literal(host) is None else {}
        started = time.perf_counter()
        try:
            async with httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False, transport=self._transport
            ) as client:
                request = client.build_request("POST", pinned, content=body, headers=request_headers)
                request.extensions.update(extensions)
                response = await client.send(request, stream=True)
                try:
                    content = b""
                    async for chunk in response.aiter_bytes():
                        content += chunk
                        if len(content) >= MAX_RESPONSE_BYTES:
                            break
                finally:
                    await response.aclose()
        except httpx.TimeoutException as exc:
            raise TransientError(SYSTEM, "timeout", f"POST {host} timed out") from exc
        except httpx.TransportError as exc:
            raise TransientError(SYSTEM, "transport", f"POST {host}: {type(exc).__name__}") from exc
        return WebhookResponse(
            response.status_code, content[:MAX_RESPONSE_BYTES], round((time.perf_counter() - started) * 1000)
        )
