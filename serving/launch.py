"""`python -m serving.launch [--processes N] [streamlit options]`: what `./run app` starts.

The app's `st.App` (app.py) served by uvicorn through its public API, with every server
option read from Streamlit's own configuration (config.toml, `STREAMLIT_*` environment
variables, `--section.option value` flags), so the port and address set in config.toml hold
here as under `streamlit run app.py`. Beyond `streamlit run`, it closes TCP connections that
send no request within `FIRST_REQUEST_SECONDS` (uvicorn keeps them forever otherwise, and a
few hundred silent sockets from one laptop would use up the process's open files).

Several processes on one port (Linux): a class of 300 students drawing keeps one server
process's core nearly full (Python runs one thread at a time). With N > 1 the launcher
listens with N sockets (serving.shared_port) and gives socket k to process k, which serves
it with uvicorn's `fd`: each visitor's device always reaches the same process, which holds its
session. Everything that must agree between them is in the models folder and the drawings
database. A process that dies is started again on its socket: its visitors' connections wait
for it, and nobody else's move. N defaults to the machine's cores, at most 4; on a system
that cannot share a port by visitor address (Windows, macOS) one process serves.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import sys
import threading
import webbrowser
from pathlib import Path

from serving import shared_port
from serving.supervise import Supervisor, die_with_parent

REPO = Path(__file__).resolve().parent.parent
APP = "app:app"
PROCESSES_ENV = "MNIST_SERVER_PROCESSES"
DEFAULT_MAX_PROCESSES = 4
FIRST_REQUEST_SECONDS = 10  # a browser sends its request at once; a silent socket is closed
PING_SECONDS = 30  # Streamlit's own websocket keep-alive, when the config names none
log = logging.getLogger("serving.launch")


def default_processes() -> int:
    from mnist_core.platform_os import usable_cores

    return max(1, min(DEFAULT_MAX_PROCESSES, len(usable_cores())))


def streamlit_flags(args: list[str]) -> dict[str, object]:
    """Streamlit's options from `--section.option value` (or `=value`) and from the
    `STREAMLIT_*` environment variables (flags win), typed as Streamlit types them.
    Raises ValueError for an option Streamlit does not have."""
    from streamlit import config

    options = config.get_config_options()
    given: dict[str, str] = {name: os.environ[option.env_var] for name, option in options.items()
                             if option.env_var in os.environ}
    words = iter(args)
    for word in words:
        name, has_value, value = word.removeprefix("--").partition("=")
        if not word.startswith("--") or name not in options:
            raise ValueError(f"unknown option: {word}")
        given[name] = value if has_value else next(words, "")
    return {name: _typed(options[name].type, value) for name, value in given.items()}


def _typed(kind, value: str):
    if kind is bool:
        return value.strip().lower() in ("1", "true", "yes", "on")
    if kind in (int, float):
        return kind(value)
    return value


def load_config(args: list[str]):
    """Streamlit's configuration with these flags; returns `config.get_option`."""
    from streamlit import config

    config.get_config_options(force_reparse=True, options_from_flags=streamlit_flags(args))
    return config.get_option


def uvicorn_config(option, **where):
    """uvicorn's settings from Streamlit's options, as `streamlit run` sets them, plus the
    first-request timeout and a tighter bound on inbound frames."""
    import uvicorn

    from serving.first_request import FirstRequestTimeout

    ping = option("server.websocketPingInterval") or PING_SECONDS
    FirstRequestTimeout.seconds = FIRST_REQUEST_SECONDS
    return uvicorn.Config(
        APP, **where, http=FirstRequestTimeout, ws="websockets-sansio",
        ws_ping_interval=ping, ws_ping_timeout=ping,
        # Inbound frames: none larger than Streamlit would accept, refused before they are
        # buffered whole (`streamlit run` allows server.maxMessageSize, 8 MB, here).
        ws_max_size=int(option("server.maxWidgetStateSize")) * 1024 * 1024,
        ws_per_message_deflate=bool(option("server.enableWebsocketCompression")),
        ssl_certfile=option("server.sslCertFile"), ssl_keyfile=option("server.sslKeyFile"),
        use_colors=False, access_log=False, log_level="info")


def with_port(args: list[str], port: int) -> list[str]:
    """Streamlit's options with the port the launcher bound (the join address shows it, and
    0 asked for any)."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--server.port":
            skip = True
        elif not arg.startswith("--server.port="):
            kept.append(arg)
    return [*kept, "--server.port", str(port)]


def child_commands(fds: list[int], args: list[str], port: int) -> list[list[str]]:
    """The command of each server process: its listening socket's descriptor and index,
    and Streamlit's options with the port."""
    return [[sys.executable, "-m", "serving.launch", "--child", str(fd), str(index),
             *with_port(args, port)] for index, fd in enumerate(fds)]


def listening_sockets(address: str | None, port: int, processes: int) -> list[socket.socket]:
    """One socket, or `processes` sockets steered by visitor address (Linux). Raises
    OSError, with a sentence when the port is taken."""
    if address is None:
        address = shared_port.default_address()
    if processes > 1:
        if port and shared_port.port_taken(address, port):
            raise OSError(f"Port {port} is already in use: stop what serves there, or "
                          "choose another one with --server.port.")
        sockets = shared_port.listen(address, port, processes)
    else:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            sockets = [socket.create_server((address, port), family=family, backlog=2048,
                                            dualstack_ipv6=family == socket.AF_INET6 and
                                            address in ("::", ""))]
        except OSError as exc:
            raise OSError(f"Cannot listen on {address} port {port}: {exc.strerror or exc}. "
                          "Is the app already running? Choose another port with "
                          "--server.port.") from None
    for sock in sockets:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by visitors
    return sockets


def announce(port: int, address: str | None, processes: int, open_browser: bool) -> None:
    """The lines the teacher reads: where to open the app (and the join view)."""
    local = f"http://localhost:{port}"
    print(f"\n  The MNIST classroom is served on port {port} ({processes} process"
          f"{'es' if processes > 1 else ''}).\n  Open {local} on this machine; students "
          "join at the address on its Home page.\n", flush=True)
    if address in ("127.0.0.1", "::1", "localhost"):
        print("  server.address is loopback: only this machine can open it.\n", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(local,)).start()


def serve(sock: socket.socket, option) -> None:
    """Serve the app on `sock` in this process until stopped (Ctrl-C)."""
    import uvicorn

    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    server = uvicorn.Server(uvicorn_config(option, fd=sock.fileno()))
    server.run()
    if not server.started:
        sys.exit(3)


def child(fd: int, args: list[str]) -> None:
    """One of the server processes, on the socket the launcher holds for it."""
    die_with_parent()
    serve(socket.socket(fileno=fd), load_config(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:  # --child FD INDEX [streamlit options]
        child(int(argv[1]), argv[3:])
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m serving.launch", description=__doc__.splitlines()[0],
        epilog="Other options are Streamlit's (e.g. --server.port 8502).")
    parser.add_argument("--processes", type=int, default=None,
                        help=f"server processes (default: the cores, at most "
                             f"{DEFAULT_MAX_PROCESSES}, on Linux; env {PROCESSES_ENV})")
    args, options = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        option = load_config(options)
    except ValueError as exc:
        parser.error(str(exc))
    processes = args.processes or int(os.environ.get(PROCESSES_ENV) or default_processes())
    if not 1 <= processes <= shared_port.MAX_PROCESSES:
        parser.error(f"--processes must be 1 to {shared_port.MAX_PROCESSES}")
    if processes > 1 and (why := shared_port.available()) is not None:
        print(f"One server process: several on one port need Linux ({why}).", flush=True)
        processes = 1
    address, port = option("server.address") or None, int(option("server.port"))
    try:
        sockets = listening_sockets(address, port, processes)
    except OSError as exc:
        log.error("%s", exc)
        return 1
    port = sockets[0].getsockname()[1]  # the one chosen, when 0 asked for any
    announce(port, address, processes, open_browser=not option("server.headless"))
    if processes == 1:
        serve(sockets[0], load_config(with_port(options, port)))
        return 0
    env = dict(os.environ)
    # The same secret in every process: a cookie one signs, another accepts.
    env.setdefault("STREAMLIT_SERVER_COOKIE_SECRET", secrets.token_hex(32))
    fds = [sock.fileno() for sock in sockets]
    return Supervisor(child_commands(fds, options, port), fds, env, cwd=REPO).run()


if __name__ == "__main__":
    sys.exit(main())
