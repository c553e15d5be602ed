"""Markdown people or providers wrote, shown safely: ``nexus_core.markdown.safe`` is the public
renderer (``safe_markdown``, ``escape_markdown``, ``as_code_block``); ``_reading`` is its private
model of how Streamlit's browser parser reads a text."""
