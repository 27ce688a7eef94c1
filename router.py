"""The app's main script (named by app.py's `st.App`): every run goes through the one
navigation (serving.navigation), which opens the page the URL names."""

from serving import navigation

navigation.navigation()
