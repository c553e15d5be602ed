"""Widgets more than one view draws. A view (``*_view.py``) never imports another view: what two
views share lives here (``tests/test_architecture.py`` checks it)."""
