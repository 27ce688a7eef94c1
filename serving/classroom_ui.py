"""The teacher's join view: the address students type or scan, who is connected, and what
usually keeps them out when nobody manages to join."""

from __future__ import annotations

import base64
import io

import segno
import streamlit as st

from mnist_core.drawings import DrawingStoreError
from serving import classroom, navigation, roles, ui

RECENT_SECONDS = 600  # "drawings in the last 10 minutes"
PRESENTER_QR_WIDTH = 440  # CSS pixels: readable from the back of a room when projected
NOBODY_JOINED_AFTER = 180  # seconds of join view without a student before the hint
HINT = (
    "**Nobody has joined yet.** What usually blocks students:\n"
    "- **Guest Wi-Fi that isolates devices** from each other: use a phone hotspot or a "
    "travel router instead, with the laptop and the students on it.\n"
    "- **The laptop's firewall** refuses incoming connections to this port: allow Python "
    "(or the port) on private networks.\n"
    "- **Phones on mobile data**, not on the room's Wi-Fi.\n"
    "- A typo in the address: scanning the QR code avoids it."
)


@st.cache_data(max_entries=8, show_spinner=False)
def qr_png(url: str, scale: int = 10) -> bytes:
    """The QR code of `url` as a PNG (dark on white, with the standard quiet zone)."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=scale, border=4)
    return buffer.getvalue()


@st.cache_data(ttl=30, max_entries=4, show_spinner=False)
def join_urls(port: int) -> list[str]:
    return classroom.join_urls(port)


def server_port() -> int:
    return int(st.get_option("server.port"))


def join_panel() -> None:
    """Home, for the teacher: the join address and QR code, and who is here."""
    urls = join_urls(server_port())
    roles.join_view_shown()
    st.subheader("Students join")
    if not urls:
        st.warning(
            "This computer has no network address other devices can reach: connect it to "
            "the classroom's Wi-Fi, a phone hotspot or a travel router, then reload. "
            f"(`{classroom.JOIN_URL_ENV}` sets the address by hand.)")
        return
    qr, text = st.columns([1, 2], gap="large")
    qr.image(qr_png(urls[0]), width=260, caption="Scan to join")
    with text:
        st.markdown(f"### Students join at **{urls[0]}**")
        if len(urls) > 1:
            st.caption("This computer is also at " + ", ".join(f"`{u}`" for u in urls[1:]))
        navigation.link("pages/6_Join.py", label="Presenter view: the QR code full screen",
                     icon=":material/fullscreen:")
        presence()


@st.fragment(run_every=5.0)
def presence() -> None:
    visitors, students = roles.connected_count()
    try:
        recent = ui.drawing_store().recent_count(RECENT_SECONDS)
    except DrawingStoreError:
        recent = None
    with ui.metric_row():
        st.metric("Students connected now", students,
                  help=f"{visitors} browser tab(s) in all, yours included")
        st.metric("Drawings in the last 10 minutes", "-" if recent is None else recent)
    if (students == 0 and roles.students_seen_since_join() == 0
            and roles.join_view_shown() > NOBODY_JOINED_AFTER):
        st.info(HINT)


def presenter_view() -> None:
    """The Join page: the QR code and the address filling the projected screen."""
    urls = join_urls(server_port())
    if not urls:
        st.error("No network address other devices can reach: see the Home page.")
        return
    roles.join_view_shown()
    st.markdown(
        f"<div style='text-align:center;font-size:clamp(1.5rem,4.2vw,4.5rem);font-weight:700;"
        f"line-height:1.1;margin:0.2em 0;overflow-wrap:anywhere'>{urls[0]}</div>",
        unsafe_allow_html=True)
    qr = base64.b64encode(qr_png(urls[0], scale=16)).decode()
    st.markdown(f"<img src='data:image/png;base64,{qr}' alt='QR code of {urls[0]}' "
                f"style='display:block;margin:auto;width:min({PRESENTER_QR_WIDTH}px,80vw)'>",
                unsafe_allow_html=True)
    st.markdown("<div style='text-align:center;font-size:1.5rem'>Scan the code or type the "
                "address on your phone or laptop, on the same Wi-Fi.</div>",
                unsafe_allow_html=True)
