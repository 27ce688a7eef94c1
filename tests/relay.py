"""A loopback relay: be a student on the same machine.

The app trusts a visitor whose TCP peer is 127.0.0.1 or ::1 as the teacher. The relay
listens on 127.0.0.1 and connects each client to the server from source address 127.0.0.2,
so the server sees a visitor from another address (`::ffff:127.0.0.2`), as it would a
student's phone. Traffic never leaves loopback.
"""

from __future__ import annotations

import select
import socket
import threading

STUDENT_ADDRESS = "127.0.0.2"


class LoopbackRelay:
    """`with LoopbackRelay(server_port) as relay:` then browse `relay.url`."""

    def __init__(self, target_port: int, source: str = STUDENT_ADDRESS):
        self.target = ("127.0.0.1", target_port)
        self.source = source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.down_bytes = 0  # bytes relayed from the server to the clients

    def __enter__(self) -> LoopbackRelay:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed = True
        self.listener.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        """Cut every relayed connection, as a phone whose screen locks or whose Wi-Fi drops."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            upstream.bind((self.source, 0))
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is upstream:
                        with self._lock:
                            self.down_bytes += len(data)
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                try:
                    sock.close()
                except OSError:
                    pass
