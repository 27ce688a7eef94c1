"""The server's OS-specific calls, each with a portable way first: TCP_NODELAY on the web
server's sockets and the limit of open files. (Several processes on one port, Linux only, is
serving.shared_port.)

TCP_NODELAY: Streamlit (1.67) binds its listening socket with `socket.socket(family)`, whose
protocol number is 0, and asyncio only turns Nagle's algorithm off for sockets whose protocol
is IPPROTO_TCP. So every websocket connection keeps Nagle on: after the first message of a
run, the rest wait for the browser's delayed ACK, ~40 ms on Linux, before they leave.
Connections accepted from a listening socket with TCP_NODELAY inherit it (Linux, macOS), so
setting it once on the listening socket fixes every later visitor; open connections are
fixed directly. The process's sockets are found with psutil (where it gives their file
descriptors: not on Windows, where this does nothing).

Open files: each visitor's session holds a websocket and an event loop's few descriptors
(~4), and the soft limit is 1024 on Linux desktops and 256 in a macOS terminal: a class of
300 with sleeping phones' sessions, or one student's script opening sockets, would reach it
and the server would stop accepting. The soft limit is raised to the hard one at start.
"""

from __future__ import annotations

import logging
import os
import socket

import psutil

log = logging.getLogger(__name__)
# Enough for a class: the macOS hard limit is often "unlimited", which setrlimit refuses.
OPEN_FILES_WANTED = 65_536


def _tcp_sockets() -> list[tuple[socket.socket, bool]]:
    """This process's TCP sockets as duplicates (closing them leaves the originals open),
    each with whether it is listening."""
    try:
        connections = psutil.Process().net_connections(kind="tcp")
    except (psutil.Error, OSError) as exc:
        log.warning("Cannot list this process's sockets: %s", exc)
        return []
    listening_ports = {c.laddr.port for c in connections
                       if c.status == psutil.CONN_LISTEN and c.laddr}
    found = []
    for connection in connections:
        if connection.fd < 0 or not connection.laddr or \
                connection.laddr.port not in listening_ports:
            continue  # not a server's: a client socket of this process is left alone
        try:
            copy = os.dup(connection.fd)
        except OSError:  # closed meanwhile
            continue
        try:
            found.append((socket.socket(fileno=copy), connection.status == psutil.CONN_LISTEN))
        except OSError:
            os.close(copy)
    return found


def disable_nagle_on_servers() -> int:
    """Set TCP_NODELAY on every listening TCP socket of this process and on the connections
    accepted from them so far. Returns how many sockets now have it; 0 where the platform
    does not give a socket's file descriptor."""
    changed = 0
    for sock, _ in _tcp_sockets():
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            changed += 1
        except OSError:
            continue
        finally:
            sock.close()
    return changed


def raise_open_files(wanted: int = OPEN_FILES_WANTED) -> tuple[int, int] | None:
    """Raise this process's soft limit of open files towards its hard limit (at most
    `wanted`). Returns (before, after), or None where the OS has no such limit (Windows)."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("Cannot raise the limit of open files from %d: %s", soft, exc)
            return soft, soft
        return soft, target
    return soft, soft
