"""`nexus chat` (send one message, print the reply) and `nexus export` (a session's transcript)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from nexus_core.errors import ValidationError
from nexus_core.transcripts import export_session

if TYPE_CHECKING:
    from nexus_core.ai.progress import JobUpdate
    from nexus_core.app_context import AppContext


def cmd_chat(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.get(args.user)
    if args.session:
        chat_session = ctx.chat.get_session(args.session, user)
    else:
        if not args.persona:
            raise ValidationError("Give --persona NAME for a new session, or --session UUID.")
        chat_session = ctx.chat.create_session(user, args.persona)
    worker = ctx.worker
    unsubscribe = None
    if not args.json and sys.stderr.isatty():
        unsubscribe = worker.broker.subscribe(chat_session.public_id, _print_retry_note)
    _message, job_id = worker.ask(
        ctx.chat, chat_session.public_id, user, args.message, channel="cli"
    )
    job = worker.wait(job_id)
    if unsubscribe:
        unsubscribe()
    reply = ctx.chat.message(job.reply_message_id, user) if job.reply_message_id else None
    ok = job.status == "succeeded" and reply is not None
    if args.json:
        print(
            json.dumps(
                {
                    "session_id": chat_session.public_id,
                    "status": "ok" if ok else "failed",
                    "reply": reply.content if ok and reply else None,
                    "error": None if ok else (job.last_error or "The reply failed."),
                },
                ensure_ascii=False,
            )
        )
        return 0 if ok else 1
    if ok and reply:
        print(reply.content)
        return 0
    print(
        f"nexus: {job.last_error or 'The reply failed.'} (session {chat_session.public_id})",
        file=sys.stderr,
    )
    return 1


def cmd_export(ctx: AppContext, args: argparse.Namespace) -> int:
    exported = export_session(ctx.db, args.session, args.format, actor=None)
    sys.stdout.write(
        exported.content if exported.content.endswith("\n") else exported.content + "\n"
    )
    return 0


def _print_retry_note(update: JobUpdate) -> None:
    if update.status == "retrying" and update.retry_in_seconds is not None:
        print(
            f"… {update.message} — retrying in {update.retry_in_seconds:.1f} s "
            f"(attempt {update.attempt + 1} of {update.max_attempts})",
            file=sys.stderr,
        )
