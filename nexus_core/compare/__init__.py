"""Prompt testing: side-by-side comparisons of personas and models, test sets, and their results.

``variants`` (what is compared), ``run_store`` (runs as hidden chat sessions with real reply
jobs), ``runs`` (``CompareService``), ``votes`` (judging and the leaderboard), ``test_sets``
(``TestSetService``) and ``test_results`` (the results matrix); the pure maths is in ``checks``,
``scoring`` and ``run_diff``.
"""
