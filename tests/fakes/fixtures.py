"""Pytest fixtures for the fake AI servers.

Register them in ``tests/conftest.py`` with ``pytest_plugins = ["tests.fakes.fixtures"]``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
def gemini_server() -> Iterator[FakeGeminiServer]:
    """A running fake Gemini server on 127.0.0.1; point ``GEMINI_API_BASE`` at its ``base_url``."""
    with FakeGeminiServer() as server:
        yield server


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """A running fake OpenAI-compatible server; point ``OPENAI_API_BASE`` at its ``base_url``."""
    with FakeOpenAIServer() as server:
        yield server
