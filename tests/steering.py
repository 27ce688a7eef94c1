"""Which of several sockets sharing a port accepts a visitor's connection.

Run as a module (by test_shared_port, inside a network namespace of its own whose loopback
holds the IPv6 addresses given), it shares a port on ::1 between two sockets, connects
from each address eight times and prints which socket accepted each (JSON: address ->
sorted picks)."""

from __future__ import annotations

import json
import select
import socket
import sys

from serving import shared_port


def accepted_by(sockets: list[socket.socket], host: str, port: int, source: str) -> int:
    """Connect to `host` from `source`; which of `sockets` accepted the connection."""
    with socket.create_connection((host, port), source_address=(source, 0)):
        ready, _, _ = select.select(sockets, [], [], 10)
        assert len(ready) == 1, f"{len(ready)} sockets got the connection"
        accepted, _ = ready[0].accept()
        accepted.close()
        return sockets.index(ready[0])


if __name__ == "__main__":
    sockets = shared_port.listen("::1", 0, 2)
    port = sockets[0].getsockname()[1]
    print(json.dumps({source: sorted({accepted_by(sockets, "::1", port, source)
                                      for _ in range(8)})
                      for source in sys.argv[1:]}))
