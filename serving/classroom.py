"""Who is the teacher, and how students reach the server: plain rules, no Streamlit.

The teacher is whoever sits at the server's own machine (the websocket's TCP peer is a
loopback address that a remote visitor cannot forge), or whoever signs in with the password
in `MNIST_TEACHER_PASSWORD`. Everyone else is a student. The server checks the role when an
action happens; hiding a button is only a courtesy.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

TEACHER = "teacher"
STUDENT = "student"

PASSWORD_ENV = "MNIST_TEACHER_PASSWORD"
TRUST_LOCALHOST_ENV = "MNIST_TRUST_LOCALHOST"
SINGLE_USER_ENV = "MNIST_SINGLE_USER"
JOIN_URL_ENV = "MNIST_JOIN_URL"

# What Streamlit reports for a browser on the server's own machine: None for 127.0.0.1 and
# ::1, and the IPv4-mapped form as is when the socket is dual-stack. Other loopback
# addresses (127.0.0.2, ...) are deliberately not the teacher: a relay or a container on the
# same machine may connect from them on behalf of someone else.
LOCAL_PEERS = frozenset({None, "127.0.0.1", "::1", "::ffff:127.0.0.1"})

FREE_TRIES = 3  # wrong passwords before each further try must wait
MAX_WAIT_SECONDS = 60.0
# Script runs a student's address may start: a stroke, a tap or a page's own refresh is one
# each, and a person makes a few a second at most. A script sending canvas values in a loop
# made ~5000 a second, and one such student took every other visitor's prediction from
# 0.01 s to 3-24 s (benchmarks/RESULTS.md).
RUNS_PER_SECOND = 5.0
RUN_BURST = 15
# And by what they cost: every byte of a run's message is parsed and kept by the server. A
# drawing sends at most ~50 kB (serving.edge), a student a few a second; a script sending
# oversized values gets the burst, then one such value a second.
RUN_BYTES_PER_SECOND = 256 * 1024
RUN_BYTE_BURST = 2 * 1024 * 1024
MAX_TRACKED_ADDRESSES = 10_000


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def single_user() -> bool:
    """`MNIST_SINGLE_USER=1`: everyone is the teacher (one person on a laptop)."""
    return _flag(SINGLE_USER_ENV, False)


def trust_localhost() -> bool:
    """`MNIST_TRUST_LOCALHOST=0`: visitors on the server's machine are students too (a
    reverse proxy on the same machine that does not pass the visitor's address)."""
    return _flag(TRUST_LOCALHOST_ENV, True)


UNKNOWN = "unknown"  # a visitor with no live connection now: never trusted as local


def visitor_peer(ip: str | None, host: str | None) -> str | None:
    """The peer roles go by, from a connection's address (`st.context.ip_address`: None for
    127.0.0.1 and ::1) and the Host header it asked for. UNKNOWN without a Host (no live
    connection: a student who sends a message and disconnects must not become the teacher,
    nor get a fresh allowance), and for a loopback peer that asked for another host name: a
    web page the teacher opens can make the browser connect to 127.0.0.1 under its own name
    (DNS rebinding), and must not act as the teacher."""
    if not host or not (ip is None or isinstance(ip, str)):
        return UNKNOWN
    if is_local_peer(ip) and not is_local_host(host):
        return UNKNOWN
    return ip


def is_local_peer(ip: str | None) -> bool:
    """True for a visitor on the server's own machine, as Streamlit's websocket sees it."""
    return ip in LOCAL_PEERS


LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_local_host(host: str) -> bool:
    """Whether an HTTP Host header names this machine's loopback (any port): what a
    browser on the server's machine sends, and a page under another name cannot."""
    host = host.strip().lower()
    if host.startswith("["):
        name = host[:host.find("]") + 1] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in LOCAL_HOSTS or name.endswith(".localhost")


def _address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The visitor's address (an IPv4-mapped one as IPv4), None when unknown."""
    try:
        address = ipaddress.ip_address(str(ip).split("%", 1)[0])
    except ValueError:
        return None
    return getattr(address, "ipv4_mapped", None) or address


def network_key(ip: str | None, session_id: str) -> str:
    """The coarse count, for what must not be multiplied by taking more addresses (wrong
    passwords): an IPv4 address, an IPv6 address by its /64 (one device can take any
    address in it), the session when the address is unknown."""
    address = _address(ip)
    if address is None:
        return f"session:{session_id}"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def visitor_key(ip: str | None, session_id: str,
                on_link: Iterable[ipaddress.IPv6Network] | None = None) -> str:
    """Whom to count a visitor as, for the counts of students and the limits on what each
    does (drawings per minute, script runs): `network_key`, except that an IPv6 address on
    one of this machine's own networks (`on_link`, by default `local_ipv6_networks()`), or a
    link-local one, counts on its own. Every device on the classroom's network shares that
    /64: counted by it, the whole class would be one student. A device on the room's network
    can claim more addresses there, IPv4 or IPv6, so these limits bound what each address
    does (and the run limit's memory is bounded); wrong passwords go by `network_key`."""
    address = _address(ip)
    if address is not None and address.version == 6 and (address.is_link_local or any(
            address in network
            for network in (local_ipv6_networks() if on_link is None else on_link))):
        return str(address)
    return network_key(ip, session_id)


IPV6_NETWORKS_FOR = 30.0  # seconds the machine's own IPv6 networks are kept between looks
_ipv6_networks: list = [float("-inf"), ()]  # when looked, what was found


def local_ipv6_networks(clock: Callable[[], float] = time.monotonic
                        ) -> tuple[ipaddress.IPv6Network, ...]:
    """The /64 of each IPv6 address (not loopback or link-local) of this machine's
    interfaces that are up: the room's network, which IPv6 hands out in /64s. By the
    address, not its mask: an address from DHCPv6 is often a /128 in a /64 known only by
    its route, and some systems give no mask. Looked up at most every IPV6_NETWORKS_FOR
    seconds (it runs for a student's every script run); a failed look keeps the last."""
    now = clock()
    looked, networks = _ipv6_networks
    if now - looked < IPV6_NETWORKS_FOR:
        return networks
    _ipv6_networks[0] = now  # one look per period, even when it fails
    try:
        interfaces = machine_interfaces()
    except Exception as exc:  # psutil can't read the interfaces here: keep the last look
        logging.getLogger(__name__).warning("Could not read the IPv6 networks: %s", exc)
        return networks
    networks = tuple(sorted({ipaddress.IPv6Network(f"{ip}/64", strict=False)
                             for addresses in interfaces.values() for address in addresses
                             if (ip := _usable(address)) is not None and ip.version == 6}))
    _ipv6_networks[:] = [now, networks]
    return networks


def role_for(ip: str | None, signed_in: bool = False, *, trust_localhost: bool | None = None,
             single_user: bool | None = None) -> str:
    """TEACHER or STUDENT for a visitor whose websocket peer is `ip` (`st.context.ip_address`).

    `trust_localhost` (env `MNIST_TRUST_LOCALHOST`, on by default) makes local visitors the
    teacher; `single_user` (env `MNIST_SINGLE_USER`, off by default) makes everyone one."""
    if single_user is None:
        single_user = globals()["single_user"]()
    if trust_localhost is None:
        trust_localhost = globals()["trust_localhost"]()
    if single_user or signed_in or (trust_localhost and is_local_peer(ip)):
        return TEACHER
    return STUDENT


def configured_password() -> str | None:
    password = os.environ.get(PASSWORD_ENV, "")
    return password or None


def password_matches(given: str, expected: str) -> bool:
    """Constant-time: how long the compare takes says nothing about the password."""
    given_digest = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    expected_digest = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(given_digest, expected_digest)


@dataclass
class SignInThrottle:
    """Wrong passwords per visitor address: after FREE_TRIES, each try waits twice as long
    as the one before (up to MAX_WAIT_SECONDS). Kept per address, not per session, so a new
    websocket does not start over."""

    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, address: str) -> float:
        """How long `address` must wait before its next try (0 when it may try now)."""
        with self._lock:
            failures, last = self._failures.get(address, (0, 0.0))
        if failures < FREE_TRIES:
            return 0.0
        delay = min(MAX_WAIT_SECONDS, 2.0 ** (failures - FREE_TRIES + 1))
        return max(0.0, last + delay - self.clock())

    def failed(self, address: str) -> None:
        with self._lock:
            failures, _ = self._failures.get(address, (0, 0.0))
            self._failures[address] = (failures + 1, self.clock())
            if len(self._failures) > MAX_TRACKED_ADDRESSES:  # bounded: forget the oldest
                stale_first = sorted(self._failures, key=lambda a: self._failures[a][1])
                for stale in stale_first[:MAX_TRACKED_ADDRESSES // 2]:
                    del self._failures[stale]

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


@dataclass
class RunThrottle:
    """Script runs per visitor address, charged by count and by bytes, as two token buckets:
    `burst` runs at once then `rate` a second, and `byte_burst` bytes at once then
    `byte_rate` a second. Per address, not per session, so opening more websockets gives no
    more runs; by bytes too, so many ordinary drawings pass and a few oversized ones do not."""

    rate: float = RUNS_PER_SECOND
    burst: float = RUN_BURST
    byte_rate: float = RUN_BYTES_PER_SECOND
    byte_burst: float = RUN_BYTE_BURST
    clock: Callable[[], float] = time.monotonic
    # address -> (runs left, bytes left, when)
    _buckets: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, address: str, size: int = 0) -> float:
        """0.0 when `address` may run a message of `size` bytes now (the run and its bytes
        are counted); else the seconds until it may, and nothing is counted."""
        size = min(size, self.byte_burst)  # a message larger than the burst waits for a full one
        with self._lock:
            now = self.clock()
            runs, space, then = self._buckets.get(address, (self.burst, self.byte_burst, now))
            runs = min(self.burst, runs + (now - then) * self.rate)
            space = min(self.byte_burst, space + (now - then) * self.byte_rate)
            if runs >= 1.0 and space >= size:
                self._buckets[address] = (runs - 1.0, space - size, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[address] = (runs, space, now)
            return max((1.0 - runs) / self.rate, (size - space) / self.byte_rate, 0.0)

    def _forget_idle(self, now: float) -> None:
        """Bounded: past MAX_TRACKED_ADDRESSES, drop the addresses whose buckets are full
        again (forgetting them changes nothing)."""
        if len(self._buckets) <= MAX_TRACKED_ADDRESSES:
            return
        refill = max(self.burst / self.rate, self.byte_burst / self.byte_rate)
        for address in [a for a, (_, _, then) in self._buckets.items() if now - then >= refill]:
            del self._buckets[address]


def _usable(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address of this machine that other devices could reach it at, or None."""
    ip = _address(address)
    if ip is None or ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return None
    return ip


def join_addresses(interfaces: Mapping[str, Iterable[str]],
                   default_address: str | None) -> list[str]:
    """The addresses other devices can reach this machine at, best first.

    `interfaces` maps an interface name to its addresses (as `psutil.net_if_addrs` gives
    them); `default_address` is the source address of the default route, if any. The default
    route's address comes first, then private IPv4 addresses (a classroom network), then any
    other IPv4, then IPv6. Loopback, link-local and unparsable addresses are never listed."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addresses in interfaces.values():
        for address in addresses:
            ip = _usable(address)
            if ip is not None and ip not in found:
                found.append(ip)
    default = _usable(default_address) if default_address else None

    def rank(ip) -> int:
        if ip == default:
            return 0
        if ip.version == 4:
            return 1 if ip.is_private else 2
        return 3

    ordered = sorted(found, key=rank)
    if default is not None and default not in found:
        ordered.insert(0, default)
    return [str(ip) for ip in ordered]


def join_url(address: str, port: int) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{port}"


def machine_interfaces() -> dict[str, list[str]]:
    """The machine's interfaces that are up, with their IPv4 and IPv6 addresses."""
    import psutil  # only the server needs it, and only for the join view

    stats = psutil.net_if_stats()
    table: dict[str, list[str]] = {}
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        table[name] = [a.address for a in addresses
                       if a.family in (socket.AF_INET, socket.AF_INET6)]
    return table


def default_route_address() -> str | None:
    """The local address of the default route. Connecting a UDP socket only asks the kernel
    which route it would take: nothing is sent (192.0.2.1 is a documentation address)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]
    except OSError:  # no default route: offline, or a network without a gateway
        return None
    finally:
        probe.close()


def join_urls(port: int) -> list[str]:
    """Where students join: `MNIST_JOIN_URL` if set, else one URL per reachable address."""
    override = os.environ.get(JOIN_URL_ENV, "").strip()
    if override:
        return [override]
    return [join_url(a, port) for a in join_addresses(machine_interfaces(),
                                                      default_route_address())]
