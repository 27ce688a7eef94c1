"""Join (teacher only): the address students join at, with its QR code, filling the screen."""

import streamlit as st

from serving import classroom_ui, roles, ui

ui.page_setup("Join", ":material/qr_code_2:", sidebar="collapsed")
st.title("Join the class")
if not roles.teacher_only("show the join view"):
    st.stop()
classroom_ui.presenter_view()
classroom_ui.presence()
