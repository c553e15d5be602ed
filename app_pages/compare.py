"""Compare (needs the prompt_compare feature): one prompt to 2–4 persona/model variants side by
side, judged (optionally blind); the leaderboard; test sets run against variants."""

import streamlit as st

from nexus_core.ui import compare_view, links, test_set_view
from nexus_core.ui.guard import require_page

ctx, user = require_page("compare")

st.title("⚖️ Compare")
compare_view.show_notice()
section = compare_view.section()
if section == "leaderboard":
    test_set_view.leaderboard(ctx, user)
elif section == "tests":
    test_set_view.test_sets(ctx, user)
else:
    compare_view.sidebar(ctx, user)
    run_id = links.compare_run()
    if not run_id:
        compare_view.new_comparison(ctx, user)
    else:
        view = compare_view.comparison(ctx, user, run_id)
        if view is not None:
            compare_view.judging(ctx, user, view)
