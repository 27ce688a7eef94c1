"""Several server processes on one port, each visitor always answered by the same one.

One Streamlit process answers every visitor on one core: Python runs one thread at a time,
and a class of 300 students drawing keeps that core nearly full (benchmarks/RESULTS.md, "A
class at once"). `serving.launch` starts several processes that listen on the same port with
SO_REUSEPORT, so the kernel hands each new connection to one of them, with no proxy in between
and the visitor's own address kept (roles go by it). By default the kernel picks by a hash of
both addresses and ports, so a visitor's reconnecting websocket or the request for an image
could land on a process that does not know its session. The socket filter below picks by the
visitor's address alone: the same device always reaches the same process.

    sockets = listen("::", 8501, processes=2)  # SO_REUSEPORT + the filter (Linux only)
    # serving.launch keeps them all and gives socket k to server process k, which serves
    # it with uvicorn.Config(fd=...)
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

# From <linux/bpf_common.h>, <linux/filter.h> and <asm-generic/socket.h>.
SO_ATTACH_REUSEPORT_CBPF = 51
SKF_NET_OFF = -0x100000  # offsets from the packet's IP header
BPF_LD, BPF_ALU, BPF_JMP, BPF_RET = 0x00, 0x04, 0x05, 0x06
BPF_W, BPF_B, BPF_ABS, BPF_K, BPF_A = 0x00, 0x10, 0x20, 0x00, 0x10
BPF_RSH, BPF_MOD, BPF_JEQ, BPF_JA = 0x70, 0x90, 0x10, 0x00

MAX_PROCESSES = 64


class SharingUnavailable(OSError):
    """This system cannot share a port by visitor address (not Linux, or too old a kernel)."""


def _instruction(code: int, jump_true: int, jump_false: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k & 0xFFFFFFFF)


def address_filter(processes: int) -> bytes:
    """A classic BPF program returning which of `processes` sockets gets a new connection:
    the visitor's IPv4 address (or the last 32 bits of its IPv6 one) modulo `processes`.
    Addresses on a classroom network differ in their last bits, so they spread evenly."""
    return b"".join([
        _instruction(BPF_LD | BPF_B | BPF_ABS, 0, 0, SKF_NET_OFF),  # version and header length
        _instruction(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4),
        _instruction(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 4),  # IPv4? else IPv6
        _instruction(BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_NET_OFF + 12),  # IPv4 source
        _instruction(BPF_JMP | BPF_JA, 0, 0, 1),
        _instruction(BPF_LD | BPF_W | BPF_ABS, 0, 0, SKF_NET_OFF + 20),  # IPv6 source, low 32
        _instruction(BPF_ALU | BPF_MOD | BPF_K, 0, 0, processes),
        _instruction(BPF_RET | BPF_A, 0, 0, 0),
    ])


def share(sock: socket.socket) -> None:
    """Let `sock` (before its bind) share its port with other processes' sockets."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise SharingUnavailable("this system has no SO_REUSEPORT")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError as exc:
        raise SharingUnavailable(f"cannot share a port: {exc}") from None


def steer(sock: socket.socket, processes: int) -> None:
    """Give every new connection on the port `sock` shares (after its bind) to the socket
    its visitor's address picks (address_filter). Raises SharingUnavailable.

    Attached to one socket, the filter serves the port's whole group; attached before the
    bind, it would give the socket a group of its own and the bind would fail."""
    if not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be 1 to {MAX_PROCESSES}, got {processes}")
    program = address_filter(processes)
    code = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = struct.pack("HP", len(program) // 8, ctypes.addressof(code))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        raise SharingUnavailable(f"cannot share a port by visitor address: {exc}") from None


def available(address: str = "127.0.0.1") -> str | None:
    """None when this system can share a port on `address` by visitor address, else why
    not."""
    try:
        for sock in listen(address, 0, 2):
            sock.close()
    except OSError as exc:
        return str(exc)
    return None


def default_address() -> str:
    """Every interface: IPv6 and IPv4 on one socket where the system has IPv6."""
    return "::" if socket.has_ipv6 else "0.0.0.0"


def port_taken(address: str, port: int) -> bool:
    """Whether something already listens on `port` (a plain bind fails): a second launch
    must not quietly join the first one's group."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def listen(address: str, port: int, processes: int, backlog: int = 2048) -> list[socket.socket]:
    """`processes` listening sockets on `address`:`port` (0: a free port), steered by visitor
    address: socket k is the filter's choice k. Whoever holds them keeps each choice's
    place: a socket whose server process died queues its visitors' connections until the
    next process takes it over, and nobody else's visitors move."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(processes):
            sock = socket.socket(family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            share(sock)
            sock.bind((address, port))
            sock.listen(backlog)
            port = sock.getsockname()[1]
        steer(sockets[0], processes)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
