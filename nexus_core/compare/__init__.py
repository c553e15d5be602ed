"""Prompt testing: checks on replies, the comparison leaderboard and run-to-run diffs."""
