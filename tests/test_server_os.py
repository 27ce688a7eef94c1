"""The server's OS-specific calls (serving.server_os): TCP_NODELAY on its sockets, the open-files limit."""

from __future__ import annotations

import os
import socket

import pytest

from serving.server_os import disable_nagle_on_servers, raise_open_files

pytestmark = pytest.mark.unit


def nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_listening_socket_and_its_connections_send_without_delay():
    # Bound the way Streamlit binds it: protocol 0, so asyncio leaves Nagle on.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    before, _ = listener.accept()
    other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # not a server: left alone
    other.bind(("127.0.0.1", 0))
    try:
        assert listener.proto == 0 and not nodelay(listener) and not nodelay(before)
        assert disable_nagle_on_servers() >= 2
        assert nodelay(listener) and nodelay(before)  # the open connection is fixed too
        assert not nodelay(other) and not nodelay(client)
        late_client = socket.create_connection(listener.getsockname())
        after, _ = listener.accept()
        assert nodelay(after)  # later visitors inherit it from the listening socket
        after.sendall(b"still a working socket")
        assert late_client.recv(100) == b"still a working socket"
        for sock in (after, late_client):
            sock.close()
    finally:
        for sock in (listener, client, before, other):
            sock.close()


def test_it_leaves_no_file_descriptor_open(tmp_path):
    files = [open(tmp_path / f"file-{n}", "w") for n in range(5)]  # fds that are not sockets
    try:
        before = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        for _ in range(3):
            disable_nagle_on_servers()
        assert sorted(int(fd) for fd in os.listdir("/proc/self/fd")) == before
    finally:
        for file in files:
            file.close()


def test_the_open_files_limit_is_raised_to_what_a_class_needs():
    """A process started with a laptop's low soft limit (256, as in a macOS terminal) ends
    with the hard limit, or OPEN_FILES_WANTED below it."""
    import subprocess
    import sys

    resource = pytest.importorskip("resource", reason="POSIX: Windows has no such limit")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = (f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard}));"
             "from serving.server_os import raise_open_files; print(raise_open_files())"
             )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    expected = hard if hard != resource.RLIM_INFINITY else 65_536
    assert out == f"(256, {min(expected, 65_536)})"
    assert raise_open_files() is not None
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= soft
