"""Send small messages at once: TCP_NODELAY on the web server's sockets.

Streamlit (1.67) binds its listening socket itself with `socket.socket(family)`, whose protocol
number is 0, and asyncio only turns Nagle's algorithm off for sockets whose protocol is
IPPROTO_TCP. So every websocket connection keeps Nagle on: after the first message of a run,
the rest wait for the browser's delayed ACK, ~40 ms on Linux, before they leave. Connections
accepted from a listening socket with TCP_NODELAY inherit it (Linux, macOS), so setting it once
on the listening socket fixes every later visitor; open connections are fixed directly.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        if Path(folder).is_dir():
            return [int(name) for name in os.listdir(folder) if name.isdigit()]
    return []


def _tcp_sockets() -> list[socket.socket]:
    """This process's TCP sockets, as duplicates (closing them leaves the originals open)."""
    found = []
    for fd in _open_fds():
        try:
            copy = os.dup(fd)
        except OSError:  # closed meanwhile
            continue
        try:
            sock = socket.socket(fileno=copy)
        except OSError:  # not a socket
            os.close(copy)
            continue
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
            found.append(sock)
        else:
            sock.close()
    return found


def _listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False


def disable_nagle_on_servers() -> int:
    """Set TCP_NODELAY on every listening TCP socket of this process and on the connections
    accepted from them so far. Returns how many sockets now have it; 0 where the platform
    does not list a process's file descriptors."""
    sockets = _tcp_sockets()
    try:
        listening = [sock for sock in sockets if _listening(sock)]
        ports = {sock.getsockname()[1] for sock in listening}
        changed = 0
        for sock in sockets:
            try:
                if sock in listening or sock.getsockname()[1] in ports:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    changed += 1
            except OSError:
                continue
        return changed
    finally:
        for sock in sockets:
            sock.close()
