"""Nexus AI core: services, data model, AI providers, analytics; Streamlit only in `ui/`."""

__version__ = "0.1.0"
