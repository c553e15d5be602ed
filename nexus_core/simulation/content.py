"""What the demo people say and do: their prompts, their feedback and how it is triaged, the
notes on their votes, and the test set the demo analyst checks personas with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PROMPTS: Final = (
    "How do we roll back a bad deploy?",
    "Summarise last week's incident review.",
    "Review this function for thread safety.",
    "Draft release notes for the dashboard.",
    "Which feedback categories grew this month?",
    "Explain our error budget to a new hire.",
    "What should an on-call runbook contain?",
    "Compare Postgres and SQLite for this app.",
    "Write a short status update for the launch.",
    "How should we name the new feature flags?",
)


@dataclass(frozen=True)
class Report:
    """A feedback report a demo person files, and the status triage takes it to (``open``: it
    is left for a real person to pick up)."""

    category: str
    priority: str
    description: str
    outcome: str


# Reports about one reply (filed from the chat's Report button)...
REPLY_REPORTS: Final = (
    Report("content", "medium", "The summary invented a meeting that never happened.", "resolved"),
    Report("bug", "high", "The reply stopped halfway; the rest never arrived.", "open"),
    Report("performance", "medium", "This answer took far longer than usual.", "in_progress"),
    Report("content", "low", "It ignored the code I pasted and answered in general.", "closed"),
    Report("bug", "critical", "The reply quotes a customer's e-mail from another chat.", "open"),
    Report("content", "medium", "The runbook steps are in the wrong order.", "in_progress"),
)
# ...and about the app in general (the Feedback page).
APP_REPORTS: Final = (
    Report("performance", "high", "The dashboard takes ages to load on Monday mornings.", "open"),
    Report("ux", "low", "The thumbs buttons are easy to miss on a laptop.", "in_progress"),
    Report(
        "bug", "critical", "Exported JSON is missing the last message of long chats.", "resolved"
    ),
    Report("suggestion", "medium", "Could personas remember which project we work on?", "closed"),
    Report("ux", "low", "I'd like to search inside a conversation, not just titles.", "open"),
    Report("other", "low", "Thanks — the release notes draft saved me an hour.", "closed"),
)
# How triage gets an item to its outcome: the statuses it passes through, in order.
TRIAGE_STEPS: Final = {
    "open": (),
    "in_progress": ("in_progress",),
    "resolved": ("in_progress", "resolved"),
    "closed": ("closed",),
}
TRIAGE_NOTES: Final = {
    "in_progress": "Reproduced it; looking into the cause.",
    "resolved": "Fixed in the latest release; the reporter confirmed.",
    "closed": "Not planned for now; noted for the roadmap review.",
}
VOTE_NOTES: Final = (
    "",
    "Clearer and shorter.",
    "Missed the point of the question.",
    "Good structure, a bit generic.",
    "",
)
# The demo analyst's smoke test: checks the simulated model passes, and one it does not.
SMOKE_TEST_SET: Final = "Demo: smoke prompts"
SMOKE_TEST_TEXT: Final = """How do we roll back a bad deploy?
contains: roll back
max latency ms: 3000
---
Summarise last week's incident review.
contains: incident
---
Say hello to the new starters.
contains: hello
not contains: error
---
What is the on-call phone number?
regex: \\+?\\d[\\d -]{7,}
"""
FROZEN_TEST_SET: Final = "Demo: frozen conversations"
