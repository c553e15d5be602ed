"""How a generated query is labelled wherever it is shown: the Ask box and ``/sql`` in chat."""

from __future__ import annotations

import streamlit as st

from nexus_core.ask.drafts import GENERATED_LABEL, Draft
from nexus_core.ui import show


def generated_label(draft: Draft) -> None:
    """The "generated" badge, who wrote the draft and from which question, and its note."""
    st.badge(GENERATED_LABEL, icon=":material/auto_awesome:", color="violet")
    how = "offline template" if draft.source == "template" else "model"
    fixed = " · a corrected draft" if draft.corrects is not None else ""
    show.caption(f"Draft SQL by {draft.model} ({how}){fixed} · asked: “{draft.question}”")
    if draft.title:
        show.text(draft.title)
    if draft.note:
        (show.info if draft.covered else show.warning)(draft.note)
