"""The app's main script (named by app.py's `st.App`): every run goes through the one
navigation (serving.navigation), which opens the page the URL names. It sits in serving/, away
from the `pages/` folder (see serving.navigation)."""

from serving import navigation

navigation.navigation()
