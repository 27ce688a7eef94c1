"""`python -m tests.count_ip_lookups COUNT_FILE [serving.launch options]`: the app as
`./run app` serves it, with Streamlit's lookup of the machine's external address replaced by
a stub that writes one line to COUNT_FILE per call (and answers nothing, as an offline
network would). The test reads how often a visitor's request made the server look."""

import sys
from pathlib import Path

from streamlit import net_util


def counting_stub(count_file: Path):
    def get_external_ip() -> None:
        with count_file.open("a") as file:
            file.write("lookup\n")
    return get_external_ip


if __name__ == "__main__":
    net_util.get_external_ip = counting_stub(Path(sys.argv[1]))
    from serving import launch

    sys.exit(launch.main(sys.argv[2:]))
