"""Widgets of the Compare page: the variant pickers, a comparison streaming side by side, judging,
and the page's sections (comparison, leaderboard, test sets).

The open comparison lives in the URL (``links.compare_url``) so a link reopens it; the section
too (``links.compare_section``). Replies are real jobs: the columns follow them through the
worker's broker while they stream, and show what the database holds once they are done.
"""

from __future__ import annotations

import streamlit as st

from nexus_core.app_context import AppContext
from nexus_core.compare.runs import CompareSlot, CompareView
from nexus_core.compare.votes import Rating
from nexus_core.errors import ValidationError
from nexus_core.ui import links, notices, show
from nexus_core.ui.widgets.follow import follow
from nexus_core.ui.widgets.variants import variant_pickers
from nexus_core.users import UserView

SECTIONS = {"compare": "Compare", "leaderboard": "Leaderboard", "tests": "Test sets"}
NOTICE = "nexus_cmp_notice"
SECTION = "nexus_cmp_section"
NEW_RUN = "nexus_cmp_new"
OPEN_PREFIX = "nexus_cmp_open_"
FORM = "nexus_cmp_form"
PROMPT = "nexus_cmp_prompt"
HISTORY = "nexus_cmp_history"
HISTORY_OPEN = "nexus_cmp_history_open"
HISTORY_LABEL = "Shared history (optional)"
TAG = "nexus_cmp_tag"
BLIND = "nexus_cmp_blind"
VARIANT_COUNT = "nexus_cmp_variant_count"
VARIANT_PREFIX = "nexus_cmp_variant_"
VOTE_FORM = "nexus_cmp_vote"
BEST = "nexus_cmp_best"
RATING_PREFIX = "nexus_cmp_rating_"
NOTE_PREFIX = "nexus_cmp_note_"
RETRY_PREFIX = "nexus_cmp_retry_"

NO_BEST = "No single best"
BLIND_FAILURE = "This variant did not answer."
RATINGS = {"👍 good": True, "👎 bad": False}
FOLLOW_EVERY_SECONDS = 0.5  # how often the replies are redrawn while they stream
MIN_VARIANTS, MAX_VARIANTS = 2, 4
STATUS_TEXT = {
    "queued": "Waiting for a worker…",
    "running": "Answering…",
    "retrying": "The provider stumbled — retrying (attempt {attempt} of {max_attempts})…",
}


def show_notice() -> None:
    """The outcome of the last action, once."""
    notices.show(NOTICE)


def section() -> str:
    """The section the URL names (comparison by default), with a switcher."""
    current = links.compare_section() or "compare"
    if current not in SECTIONS:
        current = "compare"
    st.session_state[SECTION] = current
    st.segmented_control(
        "Section",
        list(SECTIONS),
        format_func=SECTIONS.__getitem__,
        key=SECTION,
        label_visibility="collapsed",
        on_change=_switch_section,
    )
    return current


def _switch_section() -> None:
    links.show_compare(section=st.session_state.get(SECTION) or "compare")


# --- the run list and the new-comparison form ------------------------------------------------


def sidebar(ctx: AppContext, user: UserView) -> None:
    """The user's recent comparisons and a button for a new one."""
    with st.sidebar:
        st.subheader("Comparisons")
        st.button(
            "New comparison", icon=":material/add:", key=NEW_RUN, on_click=_open, args=(None,)
        )
        runs = notices.act(lambda: ctx.compare.list_runs(user)) or []
        if not runs:
            st.caption("_None yet._")
        current = links.compare_run()
        for run in runs:
            label = run.prompt if len(run.prompt) <= 40 else run.prompt[:39] + "…"
            mark = "" if run.voted else " •"
            st.button(
                show.plain(f"{label}{mark}"),
                key=OPEN_PREFIX + run.id,
                type="primary" if run.id == current else "tertiary",
                help="• not judged yet" if not run.voted else None,
                on_click=_open,
                args=(run.id,),
            )


def _open(run_id: str | None) -> None:
    links.show_compare(run_id=run_id)


def new_comparison(ctx: AppContext, user: UserView) -> None:
    """The prompt, an optional shared history, a tag, blind mode and 2–4 variants."""
    count = (
        st.segmented_control(
            "Variants",
            list(range(MIN_VARIANTS, MAX_VARIANTS + 1)),
            default=MIN_VARIANTS,
            key=VARIANT_COUNT,
        )
        or MIN_VARIANTS
    )
    prompt = st.text_area("Prompt", key=PROMPT, placeholder="Ask every variant the same thing")
    history_text = _shared_history()
    left, right = st.columns([3, 1])
    tag = left.text_input("Tag (optional)", key=TAG, placeholder="e.g. onboarding")
    blind = right.toggle(
        "Blind mode", key=BLIND, help="Hide which variant is which until you vote."
    )
    specs = variant_pickers(ctx, VARIANT_PREFIX, int(count))
    if not st.button("Compare", icon=":material/compare_arrows:", type="primary", key=FORM):
        return
    view = notices.act(
        lambda: ctx.compare.start(
            user, prompt, specs, history=parse_history(history_text), tag=tag, blind=blind
        )
    )
    if view is not None:
        _open(view.id)
        st.rerun()


def _shared_history() -> str:
    """The shared history's text, in a lazy expander: its text area is drawn only while it is
    open, and what was typed in it is kept while it is closed."""
    if HISTORY in st.session_state:
        # Kept across runs that do not draw the text area (Streamlit's documented way).
        st.session_state[HISTORY] = st.session_state[HISTORY]
    history = st.expander(HISTORY_LABEL, key=HISTORY_OPEN, on_change="rerun")
    if history.open:
        with history:
            st.text_area("Earlier turns, one per line: “user: …” then “assistant: …”", key=HISTORY)
    return str(st.session_state.get(HISTORY, ""))


def parse_history(text: str) -> list[tuple[str, str]]:
    """``user: …`` / ``assistant: …`` lines as (role, text) turns (the service checks the order);
    a line that continues a turn is joined to it."""
    turns: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        role, _, content = line.partition(":")
        if role.strip().lower() in ("user", "assistant") and content.strip():
            turns.append((role.strip().lower(), content.strip()))
        elif turns:
            turns[-1] = (turns[-1][0], turns[-1][1] + "\n" + line.strip())
        else:
            raise ValidationError(
                f"History lines start with “user:” or “assistant:”, not “{line.strip()[:40]}”."
            )
    return turns


# --- one comparison ---------------------------------------------------------------------------


def comparison(ctx: AppContext, user: UserView, run_id: str) -> CompareView | None:
    """The prompt and the replies side by side, streaming until every one has finished."""
    view = notices.act(lambda: ctx.compare.get(user, run_id))
    if view is None:
        return None
    st.markdown(f"**Prompt** · {view.created_at:%Y-%m-%d %H:%M} UTC")
    show.markdown(view.prompt)
    facts = [f"tag: {view.tag}"] if view.tag else []
    if view.blind:
        facts.append(
            "blind: revealed" if view.revealed else "blind — variants hidden until you vote"
        )
    if facts:
        show.caption(" · ".join(facts))
    first = view

    def replies() -> bool:
        # The first draw shows the view just read; each redraw while following reads it again.
        nonlocal first
        now = first or notices.act(lambda: ctx.compare.get(user, run_id))
        first = None
        if now is None:
            return False
        columns = st.columns(len(now.slots))
        for slot, column in zip(now.slots, columns, strict=True):
            with column.container(border=True):
                _slot(ctx, user, now, slot, actions=now.finished)
        return not now.finished

    follow(ctx, replies, running=not view.finished, every_seconds=FOLLOW_EVERY_SECONDS)
    return view


def _slot(
    ctx: AppContext, user: UserView, view: CompareView, slot: CompareSlot, *, actions: bool
) -> None:
    """One reply column; ``actions`` draws its buttons (once every reply is done)."""
    st.markdown(f"### {show.plain(slot.letter)}")
    if slot.variant is not None:
        show.caption(slot.variant.label)
    reply = slot.reply
    if reply.succeeded and reply.text is not None:
        show.markdown(reply.text)
        facts = []
        if reply.latency_ms is not None:
            facts.append(f"{reply.latency_ms:,.0f} ms")
        if reply.ttft_ms is not None:
            facts.append(f"first token {reply.ttft_ms:,.0f} ms")
        if reply.tokens_in is not None or reply.tokens_out is not None:
            facts.append(f"tokens {reply.tokens_in or 0} in / {reply.tokens_out or 0} out")
        show.caption(" · ".join(facts))
    elif reply.status == "failed":
        # While blind, the provider's error could name the model: keep it for after the vote.
        hidden = view.blind and not view.revealed
        show.error(BLIND_FAILURE if hidden else reply.error or BLIND_FAILURE)
        if view.votes == 0 and actions:
            st.button(
                "Retry",
                icon=":material/refresh:",
                key=f"{RETRY_PREFIX}{view.id}_{slot.letter}",
                on_click=_retry,
                args=(ctx, user, view.id, slot.position),
            )
    else:
        streamed = ctx.worker.broker.text(reply.job_id) if reply.job_id else ""
        if streamed:
            show.markdown(streamed + " ▌")
        status = STATUS_TEXT.get(reply.status, "Answering…")
        show.caption(status.format(attempt=reply.attempt, max_attempts=reply.max_attempts))


def _retry(ctx: AppContext, user: UserView, run_id: str, position: int) -> None:
    notices.act(lambda: ctx.compare.retry(user, run_id, position), key=NOTICE)


def judging(ctx: AppContext, user: UserView, view: CompareView) -> None:
    """Pick the best reply and/or rate each one; after a vote, what was decided."""
    if view.my_vote is not None:
        vote = view.my_vote
        letters = {slot.position: slot.letter for slot in view.slots}
        best = letters.get(vote.best_position) if vote.best_position is not None else None
        show.success(f"Your vote is in{f': {best} is best' if best else ''}. Thanks!")
        return
    if not view.finished:
        return
    st.subheader("Judge the replies")
    letters = [slot.letter for slot in view.slots]
    with st.form(f"{VOTE_FORM}_{view.id}"):
        best = st.radio(
            "Best reply",
            [*letters, NO_BEST],
            index=None,  # no silent default vote for A
            format_func=show.plain,
            horizontal=True,
            key=f"{BEST}_{view.id}",
        )
        ratings: dict[int, tuple[str | None, str]] = {}
        for slot, column in zip(view.slots, st.columns(len(view.slots)), strict=True):
            verdict = column.segmented_control(
                show.plain(f"{slot.letter} was"),
                list(RATINGS),
                key=f"{RATING_PREFIX}{view.id}_{slot.letter}",
            )
            note = column.text_input("Note", key=f"{NOTE_PREFIX}{view.id}_{slot.letter}")
            ratings[slot.position] = (verdict, note)
        submitted = st.form_submit_button("Submit vote", type="primary")
    if not submitted:
        return
    chosen = next((s.position for s in view.slots if s.letter == best), None)
    rated = {
        position: Rating(RATINGS[verdict], note.strip())
        for position, (verdict, note) in ratings.items()
        if verdict is not None
    }
    # No success text here: after the rerun "Your vote is in" says it (one banner, not two);
    # a refused vote says why in place.
    voted = notices.act(lambda: ctx.compare.vote(user, view.id, best=chosen, ratings=rated))
    if voted is not None:
        st.rerun()
