"""Train: the teacher chooses settings and starts; everyone watches live, inspects the result
and compares runs."""

import streamlit as st

from serving import roles, train_ui, ui

ui.page_setup("Train", ":material/monitoring:")
st.title("Train a model")
ui.dataset()  # a broken dataset stops the page here, saying how to fix it
teacher = roles.is_teacher()

if teacher:
    train_ui.teacher_controls()
else:
    st.caption("The teacher starts and stops the trainings. Watch this one learn, live: the "
               "loss goes down and the accuracy up as the network sees more digits.")

st.header("Live training")
train_ui.live_section()

scan = ui.scan()
if teacher:
    ui.show_skipped(scan)
st.header("Results")
if not scan.usable:
    st.info("Results appear here when a training has finished.")
    st.stop()
by_id = {run.run_id: run for run in scan.usable}
train_ui.run_in_link(by_id)
chosen = st.selectbox("Run", list(by_id), format_func=lambda r: by_id[r].label(),
                      key="train_result_run", on_change=train_ui.remember_run_in_link)
train_ui.results(by_id.get(chosen, scan.usable[0]))
st.header("All runs")
train_ui.all_runs(scan, by_id)
train_ui.draw_model_panel(by_id)
if teacher:
    train_ui.delete_panel(scan)
