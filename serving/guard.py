"""What a visitor's websocket may ask of the server, checked before Streamlit acts on it.

Streamlit's developer messages are the teacher's: a student's websocket can't send them.

Streamlit's browser protocol lets any session ask the server to clear every cache of the app
(`clear_cache`, for all visitors at once), to rerun on every source change
(`set_run_on_save`) or to read the git state of the app's folder (`load_git_info`). The
toolbar hides them from visitors (`client.toolbarMode = "minimal"`), but a crafted message
still reaches the server. Installed once per server, this filter drops those messages
from every session that is not the teacher's (by the session's websocket peer; a signed-in
teacher on another device does not need them) and logs the attempt. The app takes no
uploads: Streamlit's upload route stays open to every session, so the uploaded-file manager
refuses every file (and `server.maxUploadSize` is 0).
"""

from __future__ import annotations

import functools
import logging

from streamlit import runtime
from streamlit.runtime.app_session import AppSession
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

from mnist_core import classroom

log = logging.getLogger(__name__)
TEACHER_ONLY_MESSAGES = frozenset({"clear_cache", "set_run_on_save", "load_git_info"})
UNKNOWN = "unknown"  # a session with no connection now: never trusted as local


def client_peer(client) -> str | None:
    """A websocket client's peer as `st.context.ip_address` reports it: None for 127.0.0.1
    and ::1, else the address. UNKNOWN when there is no client (a student who sends a
    message and disconnects must not become the teacher), and for a loopback peer that
    asked for another host name: a web page the teacher opens can make the browser connect
    to 127.0.0.1 under its own name (DNS rebinding), and must not act as the teacher."""
    context = getattr(client, "client_context", None)
    ip = getattr(context, "remote_ip", None)
    if not isinstance(ip, str):
        return UNKNOWN
    peer = None if ip in ("127.0.0.1", "::1") else ip
    if classroom.is_local_peer(peer) and not classroom.is_local_host(_host(context)):
        return UNKNOWN
    return peer


def _host(context) -> str:
    try:
        return next((value for name, value in context.headers if name.lower() == "host"), "")
    except Exception:  # no headers to read: not a browser's websocket
        return ""


def session_peer(session_id: str) -> str | None:
    return client_peer(runtime.get_instance().get_client(session_id)
                       if runtime.exists() else None)


def allowed(session_id: str, message_type: str | None) -> bool:
    if message_type not in TEACHER_ONLY_MESSAGES:
        return True
    return classroom.role_for(session_peer(session_id)) == classroom.TEACHER


def install() -> bool:
    """Wrap AppSession.handle_backmsg once; True if this call installed it."""
    original = AppSession.handle_backmsg
    if getattr(original, "_mnist_guard", False):
        return False

    @functools.wraps(original)
    def handle_backmsg(self, msg):
        kind = msg.WhichOneof("type")
        if not allowed(self.id, kind):
            log.warning("Dropped %s from a student's session (%s)", kind, session_peer(self.id))
            return None
        return original(self, msg)

    handle_backmsg._mnist_guard = True
    AppSession.handle_backmsg = handle_backmsg
    MemoryUploadedFileManager.add_file = _refuse_upload
    return True


def _refuse_upload(self, session_id: str, file) -> None:
    log.warning("Refused a file upload from session %s (%s): the app takes none",
                session_id, session_peer(session_id))
