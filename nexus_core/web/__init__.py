"""The ASGI side of Nexus: the Starlette routes Streamlit serves beside the app (``/health``,
``/metrics``, the session-cookie hand-off), and the security headers on every response."""
