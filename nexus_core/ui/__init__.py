"""The only part of nexus_core that imports streamlit: cached resources, session keys, widgets."""
