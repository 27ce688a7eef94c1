"""What only the Streamlit server needs: shared resources, page setup, web-server tweaks.

May import Streamlit; never TensorFlow or Keras (see tests/test_architecture.py).
"""
