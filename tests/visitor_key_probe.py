"""Run by test_classroom in a network namespace of its own: print the machine's IPv6
networks as the server reads them, and the visitor key of each address given (JSON)."""

import json
import sys

from serving import classroom

print(json.dumps({"networks": [str(n) for n in classroom.local_ipv6_networks()],
                  "keys": [classroom.visitor_key(address, "s") for address in sys.argv[1:]]}))
