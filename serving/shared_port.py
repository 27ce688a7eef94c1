"""Several server processes on one port, each visitor always answered by the same one.

One Streamlit process answers every visitor on one core: Python runs one thread at a time,
and a class of 300 students drawing keeps that core nearly full (benchmarks/RESULTS.md, "A
class at once"). `serving.launch` starts several processes that listen on the same port with
SO_REUSEPORT, so the kernel hands each new connection to one of them, with no proxy in between
and the visitor's own address kept (roles go by it). By default the kernel picks by a hash of
both addresses and ports, so a visitor's reconnecting websocket or the request for an image
could land on a process that does not know its session. The socket filter below picks by the
visitor's address alone: the same device always reaches the same process.

    sock = socket.socket(socket.AF_INET6)
    share(sock)  # SO_REUSEPORT, before the bind
    sock.bind(("::", 8501)); sock.listen()
    steer(sock, processes=2)  # the filter, after the bind (Linux only)

`install(processes)` makes Streamlit's own bind do this (it binds its listening socket itself).
"""

from __future__ import annotations

import ctypes
import socket
import struct
import types

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


def available() -> str | None:
    """None when this system can share a port by visitor address, else why not."""
    try:
        with socket.socket(socket.AF_INET) as probe:
            share(probe)
            probe.bind(("127.0.0.1", 0))
            probe.listen(1)
            steer(probe, 2)
    except OSError as exc:
        return str(exc)
    return None


def install(processes: int) -> None:
    """Make Streamlit's server share its listening socket (call before it starts).

    Streamlit binds it in `starlette_server._bind_socket` with `socket.socket(family=...)`:
    that module alone is given a `socket` whose sockets share their port, and the bound
    socket is steered."""
    from streamlit.web.server.starlette import starlette_server

    def sharing_socket(*args, **kwargs) -> socket.socket:
        sock = socket.socket(*args, **kwargs)
        share(sock)
        return sock

    bind = starlette_server._bind_socket

    def bind_steered(address: str, port: int, backlog: int) -> socket.socket:
        sock = bind(address, port, backlog)
        try:
            steer(sock, processes)
        except BaseException:
            sock.close()
            raise
        return sock

    starlette_server.socket = types.SimpleNamespace(**{**vars(socket), "socket": sharing_socket})
    starlette_server._bind_socket = bind_steered
