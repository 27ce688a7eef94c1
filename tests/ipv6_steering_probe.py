"""Run by test_shared_port inside a network namespace of its own (`unshare -n`), where the
whole fd00::/64 is local on its loopback: connect to two shared sockets on ::1 from several
IPv6 addresses, and print which socket accepted each connection (JSON: address -> picks)."""

import json
import select
import socket
import sys

from serving import shared_port

IP_FREEBIND = 15  # bind to an address of the local route without configuring it


def accepted_by(sockets: list[socket.socket], port: int, source: str) -> int:
    with socket.socket(socket.AF_INET6) as client:
        client.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
        client.bind((source, 0))
        client.connect(("::1", port))
        ready, _, _ = select.select(sockets, [], [], 10)
        if len(ready) != 1:
            raise SystemExit(f"{len(ready)} sockets got the connection from {source}")
        accepted, _ = ready[0].accept()
        accepted.close()
        return sockets.index(ready[0])


sockets = shared_port.listen("::1", 0, 2)
port = sockets[0].getsockname()[1]
print(json.dumps({source: sorted({accepted_by(sockets, port, source) for _ in range(8)})
                  for source in sys.argv[1:]}))
