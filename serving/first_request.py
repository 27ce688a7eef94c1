"""uvicorn's HTTP/1.1 protocol, closing a connection that sends no whole request in time.

uvicorn (0.55) arms its keep-alive timer only after a response: a TCP connection that never
sends a request, or sends one a byte at a time, is kept forever, and each holds one of the
process's open files. `serving.launch` serves with this protocol class (uvicorn's public
`http=` setting); `streamlit run app.py` cannot pass it (see the README).
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class FirstRequestTimeout(H11Protocol):
    seconds: float = 10.0  # serving.launch sets it

    def _arm(self) -> None:
        """Close the connection at its deadline unless a whole request came by then."""
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
        self.timeout_keep_alive_task = self.loop.call_at(
            self.first_request_deadline, self.timeout_keep_alive_handler)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        # One deadline from the connection's start: a request sent a byte at a time does
        # not push it back.
        self.first_request_deadline = self.loop.time() + self.seconds
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # cancels the timer
        # Still no whole request head: the clock keeps running. (Not once a request came, nor
        # after a websocket upgrade, which hands the connection to another protocol.)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()
