"""The visitor's role in this session, the teacher's sign-in, and who is connected.

The rules are `serving.classroom`'s; this module applies them to Streamlit's session.
Every teacher-only action calls `teacher_only()` in the function that acts, so a crafted
widget value from a student's session changes nothing.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from mnist_core.runs.folder import models_dir
from serving import classroom, edge, presence

log = logging.getLogger(__name__)

# session_state: the visitor key (address) the password was given from. A signed-in session
# is the teacher only from that address: a session id overheard on the Wi-Fi and reused
# from another device is not.
SIGNED_IN = "roles_signed_in"
STUDENT_SEEN_LIMIT = 5000


def peer() -> str | None:
    """This session's websocket peer now (`classroom.visitor_peer`): None on the server's
    machine, UNKNOWN when the session has no live connection."""
    return classroom.visitor_peer(st.context.ip_address, st.context.headers.get("Host"))


def connected() -> bool:
    """Whether this session has a live connection now (its address is known)."""
    return peer() != classroom.UNKNOWN


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx else ""


def visitor() -> str:
    """Whom this session counts as for per-visitor limits (classroom.visitor_key)."""
    return classroom.visitor_key(peer(), _session_id())


def signed_in() -> bool:
    return st.session_state.get(SIGNED_IN) == visitor()


def role() -> str:
    current = classroom.role_for(peer(), signed_in())
    if current == classroom.STUDENT:
        _students().seen(visitor())
    return current


def is_teacher() -> bool:
    return role() == classroom.TEACHER


def teacher_only(action: str) -> bool:
    """True when this session may `action`; otherwise say so on the page and log it."""
    if is_teacher():
        return True
    log.warning("Refused a teacher-only action from a student (%s): %s", peer(), action)
    st.error(f"Only the teacher can {action}.")
    return False


class _Students:
    """Addresses of students seen by this server, with when (bounded)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen: dict[str, float] = {}

    def seen(self, address: str | None) -> None:
        with self._lock:
            self._seen.pop(str(address), None)  # re-inserted last: oldest first in the dict
            self._seen[str(address)] = time.time()
            if len(self._seen) > STUDENT_SEEN_LIMIT:
                self._seen.pop(next(iter(self._seen)))  # the one seen longest ago

    def since(self, when: float) -> int:
        with self._lock:
            return sum(1 for t in self._seen.values() if t >= when)

    def last(self) -> float | None:
        with self._lock:
            return max(self._seen.values(), default=None)


@st.cache_resource
def _students() -> _Students:
    return _Students()


@st.cache_resource
def _throttle() -> classroom.SignInThrottle:
    return classroom.SignInThrottle()


@st.cache_resource
def _join_view() -> dict[str, float]:
    """When this server first showed the join view (for the "nobody joined" hint)."""
    return {}


def join_view_shown() -> float:
    """Seconds since the join view was first shown on this server."""
    first = _join_view().setdefault("first", time.time())
    return time.time() - first


def students_seen_since_join() -> int:
    """Students seen by this server since the join view was first shown on it, and at
    least one more if another server process of the class has seen one since."""
    first = _join_view().get("first")
    if first is None:
        return 0
    later = (class_count().last_student or 0.0) >= first
    return max(_students().since(first), int(later))


def _local_count(students_seen: _Students) -> presence.Count:
    """The visitors connected to this server process now (its open websockets, as the edge
    counts them), and how many are students."""
    visitors, students = edge.CONNECTIONS.counts()
    return presence.Count(visitors, students, students_seen.last())


@st.cache_resource
def _presence(root: str) -> presence.Presence:
    return presence.Presence(Path(root))


@st.cache_data(ttl=1.0, show_spinner=False, max_entries=4)
def _other_processes(root: str) -> presence.Count:
    return _presence(root).others()


def class_count() -> presence.Count:
    """Everybody connected to the class: this server process's visitors and, when several
    processes serve it (serving.launch), the others' (serving.presence)."""
    return _local_count(_students()) + _other_processes(str(models_dir()))


def visitor_count() -> int:
    """Visitors connected to the class now (browser tabs, the teacher's included)."""
    return edge.CONNECTIONS.counts()[0] + _other_processes(str(models_dir())).visitors


def connected_count() -> tuple[int, int]:
    """Visitors connected to the class now, and how many of them are students."""
    count = class_count()
    return count.visitors, count.students


def start_publishing() -> None:
    """Once per server process (serving.server_start): say every few seconds how many it
    holds, for the others."""
    mine, students_seen = _presence(str(models_dir())), _students()

    def publish_forever() -> None:
        failed = False
        while True:
            try:
                mine.publish(_local_count(students_seen))
                failed = False
            except Exception as exc:  # a read-only models folder: counts stay this process's
                if not failed:
                    log.warning("Cannot publish this server's visitors in %s: %s",
                                mine.folder, exc)
                failed = True
            time.sleep(presence.PUBLISH_EVERY)

    threading.Thread(target=publish_forever, name="presence", daemon=True).start()
    atexit.register(mine.withdraw)


def _sign_in() -> None:
    """Callback of the password field: compare, throttle, remember in this session."""
    given = st.session_state.get("roles_password", "")
    st.session_state.roles_password = ""
    expected = classroom.configured_password()
    if not given or expected is None:
        return
    if not connected():  # sent as the socket closed: no address to count the try against
        log.warning("Refused a sign-in from a session with no live connection")
        st.session_state.roles_message = "The connection was lost: reload the page."
        return
    address = visitor()  # the device signed in; wrong tries count for its whole network
    tries = classroom.network_key(peer(), _session_id())
    wait = _throttle().wait_seconds(tries)
    if wait > 0:
        st.session_state.roles_message = (f"Too many wrong passwords: try again in "
                                          f"{wait:.0f} s.")
        return
    if classroom.password_matches(given, expected):
        _throttle().succeeded(tries)
        st.session_state[SIGNED_IN] = address
        edge.signed_in(address, True)
        st.session_state.roles_message = None
        log.info("Teacher signed in from %s", address)
    else:
        _throttle().failed(tries)
        log.warning("Wrong teacher password from %s", address)
        st.session_state.roles_message = "Wrong password."


def _sign_out() -> None:
    address = st.session_state.get(SIGNED_IN)
    if address:
        edge.signed_in(address, False)
    st.session_state[SIGNED_IN] = None


def sidebar() -> None:
    """Who you are here; the password field for a teacher on another device; sign-out."""
    with st.sidebar:
        if classroom.role_for(peer()) == classroom.TEACHER:
            st.caption(":material/school: You are the **teacher** (on the server's machine).")
            if classroom.configured_password() is None and not classroom.single_user():
                st.caption(
                    "To teach from another device (a tablet), start the server with "
                    f"`{classroom.PASSWORD_ENV}=...` and sign in there.")
            return
        if signed_in():
            st.caption(":material/school: Signed in as the **teacher**.")
            st.button("Sign out", on_click=_sign_out, key="roles_sign_out")
            return
        if classroom.configured_password() is None:
            return
        st.text_input("Teacher password", type="password", key="roles_password",
                      on_change=_sign_in, max_chars=200)
        message = st.session_state.get("roles_message")
        if message:
            st.error(message)
