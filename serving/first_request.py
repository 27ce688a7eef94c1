"""uvicorn's HTTP/1.1 protocol, closing a connection that sends no whole request in time.

uvicorn (0.55) arms its keep-alive timer only after a response: a TCP connection that never
sends a request, or sends one a byte at a time, is kept forever, and each holds one of the
process's open files. `serving.launch` serves with this protocol class (uvicorn's public
`http=` setting); `streamlit run app.py` cannot pass it (see the README).
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol


class FirstRequestTimeout(H11Protocol):
    seconds: float = 10.0  # serving.launch sets it

    def _arm(self) -> None:
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.seconds, self.timeout_keep_alive_handler)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is None and not self.transport.is_closing():
            self._arm()  # not a whole request yet: the clock keeps running
