"""`nexus init`, `nexus users …`, `nexus personas …` and `nexus audit verify`: setting up and
administering accounts, and checking the audit trail."""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys
from typing import TYPE_CHECKING, Any

from nexus_core import audit_chain
from nexus_core.errors import ValidationError

if TYPE_CHECKING:
    from nexus_core.app_context import AppContext
    from nexus_core.users import UserView


def _read_password(args: argparse.Namespace, prompt: str) -> tuple[str, bool]:
    """The password from stdin, a prompt, or a generated one; returns (password, generated)."""
    if args.password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ValidationError("--password-stdin was given but standard input was empty.")
        return line, False
    if sys.stdin.isatty():
        first = getpass.getpass(prompt)
        if first != getpass.getpass("Repeat: "):
            raise ValidationError("The two passwords differ.")
        return first, False
    return secrets.token_urlsafe(12), True


def cmd_init(ctx: AppContext, args: argparse.Namespace) -> int:
    report = ctx.init()
    print(f"Database ready at {ctx.db.engine.url.render_as_string(hide_password=True)}.")
    print(f"Default personas created: {report.personas_created}.")
    if report.admin_created and report.admin_password:
        print(f"Created user 'admin' with password: {report.admin_password}")
        print("It is shown only this once; change it after signing in.")
    elif report.admin_created:
        print("Created user 'admin' with the password from NEXUS_ADMIN_PASSWORD.")
    return 0


def cmd_users_add(ctx: AppContext, args: argparse.Namespace) -> int:
    role = "admin" if args.admin else args.role
    password, generated = _read_password(args, f"Password for {args.name}: ")
    user = ctx.users.create(
        args.name,
        password,
        role=role,
        email=args.email,
        display_name=args.display_name,
        must_change_password=generated,
    )
    print(f"Created {user.role} {user.username!r}.")
    if generated:
        print(f"Temporary password (change at first sign-in): {password}")
    return 0


def cmd_users_list(ctx: AppContext, args: argparse.Namespace) -> int:
    users = ctx.users.list()
    if args.json:
        print(json.dumps([user_json(u) for u in users]))
        return 0
    for u in users:
        flags = ",".join(sorted(k for k, v in u.features.items() if v)) or "-"
        state = u.status
        if u.locked_until is not None:
            state += f" until {u.locked_until:%Y-%m-%d %H:%M} UTC"
        print(f"{u.username}\t{u.role}\t{state}\t{flags}")
    return 0


def user_json(user: UserView) -> dict[str, Any]:
    """A user as ``nexus users list --json`` prints it."""
    locked = user.locked_until
    return {
        "name": user.username,
        "role": user.role,
        "status": user.status,
        "locked_until": locked.isoformat().replace("+00:00", "Z") if locked else None,
    }


def cmd_users_unlock(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.users.unlock(args.name)
    print(f"Unlocked {args.name!r}: they can sign in again now.")
    return 0


def cmd_users_export(ctx: AppContext, args: argparse.Namespace) -> int:
    print(json.dumps(ctx.personal_data.export(args.name), ensure_ascii=False, indent=2))
    return 0


def cmd_users_erase(ctx: AppContext, args: argparse.Namespace) -> int:
    if not args.yes:
        raise ValidationError(
            f"Erasing {args.name!r} removes their text for good; add --yes to confirm."
        )
    report = ctx.personal_data.erase(args.name)
    print(
        f"Erased {args.name!r}: {report.messages} messages, {report.sessions} session titles, "
        f"{report.feedback} feedback items, {report.notes} notes, {report.notebooks} notebooks, "
        f"{report.test_sets} test sets; the account is now {report.account!r}, disabled."
    )
    return 0


def cmd_audit_verify(ctx: AppContext, args: argparse.Namespace) -> int:
    report = audit_chain.verify(ctx.db)
    if args.json:
        print(json.dumps(report.as_dict()))
    elif report.intact:
        print(f"The audit chain is intact: {report.events} events, head {report.head_hash}.")
    if not report.intact:
        print(f"nexus: the audit chain is broken: {report.problem}", file=sys.stderr)
    return 0 if report.intact else 1


def cmd_users_feature(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.set_feature(args.name, args.feature, args.state == "on")
    print(f"{args.feature} is {args.state} for {user.username!r}.")
    return 0


def cmd_users_disable(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.users.set_disabled(args.name, True)
    print(f"Disabled {args.name!r}; every browser signed in as them is signed out.")
    return 0


def cmd_users_enable(ctx: AppContext, args: argparse.Namespace) -> int:
    ctx.users.set_disabled(args.name, False)
    print(f"Enabled {args.name!r}.")
    return 0


def cmd_users_passwd(ctx: AppContext, args: argparse.Namespace) -> int:
    password, generated = _read_password(args, f"New password for {args.name}: ")
    ctx.users.set_password(args.name, password, must_change=generated)
    print(f"Password changed for {args.name!r}; every browser signed in as them is signed out.")
    if generated:
        print(f"Temporary password (change at first sign-in): {password}")
    return 0


def cmd_users_role(ctx: AppContext, args: argparse.Namespace) -> int:
    user = ctx.users.set_role(args.name, args.role)
    print(f"{user.username!r} is now {user.role}.")
    return 0


def cmd_personas_add(ctx: AppContext, args: argparse.Namespace) -> int:
    persona = ctx.personas.create(
        args.name,
        args.instruction,
        avatar=args.avatar,
        color=args.color,
        description=args.description,
        model=args.model,
        temperature=args.temperature,
    )
    print(f"Created persona {persona.name!r} (version {persona.version}).")
    return 0


def cmd_personas_list(ctx: AppContext, args: argparse.Namespace) -> int:
    for p in ctx.personas.list(include_inactive=True):
        state = "active" if p.active else "inactive"
        print(f"{p.avatar} {p.name}\tv{p.version}\t{state}\t{p.model or 'default model'}")
    return 0
