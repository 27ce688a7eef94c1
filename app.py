"""The MNIST classroom: `streamlit run app.py` (or `./run app`).

An `st.App` whose main script, serving/router.py, opens the page a URL names: Home is
home.py and the lesson's pages are in pages/. In front of Streamlit sits the classroom's edge
(serving.edge: what a student's connection may send, checked before Streamlit parses it);
serving.server_start sets up each server process.
"""

import streamlit as st
from starlette.middleware import Middleware

from serving import edge, server_start

server_start.before_runtime()

app = st.App("serving/router.py", middleware=[Middleware(edge.ClassroomEdge)],
             lifespan=server_start.lifespan)
