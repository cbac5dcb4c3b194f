"""``hft command``: send one command to a running engine and print its answer."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

import msgspec
import zmq

from contracts import messages as m
from contracts.config import DeploymentConfig
from contracts.credentials import load_credentials
from contracts.errors import UserError

__all__ = ["add_arguments", "send_command"]

ACTIONS = ("halt", "reduce", "resume", "cancel_all", "flatten", "cancel_order", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=ACTIONS, help="what the engine should do")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--agent", help="only this agent")
    target.add_argument("--instrument", help="only this instrument")
    target.add_argument("--global", dest="everything", action="store_true",
                        help="the global scope (default: the account)")  # fmt: skip
    target.add_argument("--order", help="cancel_order: the order id to cancel")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")


def _endpoint_and_token(config: DeploymentConfig) -> tuple[str, str]:
    root = config.suite.journal_dir / "engine"
    endpoint = config.engine.command_endpoint
    written = root / "command.endpoint"
    if written.is_file():  # what the running engine bound (the config may say port 0)
        endpoint = written.read_text(encoding="utf-8").strip()
    secret = load_credentials(config.suite.credentials_file).engine_token
    if secret is not None:
        return endpoint, secret.get_secret_value()
    token_file = root / "command.token"
    try:
        return endpoint, token_file.read_text(encoding="utf-8").strip()
    except OSError:
        raise UserError(
            "no engine token: export HFT_ENGINE_TOKEN=... (or engine_token in the credentials "
            f"file); without one the engine writes a token to {token_file} when it starts"
        ) from None


def send_command(config: DeploymentConfig, request: dict[str, Any], timeout_s: float = 5.0
                 ) -> m.CommandReply:  # fmt: skip
    """Send ``request`` (a ``CommandRequest`` without the token) and wait for the reply."""
    endpoint, token = _endpoint_and_token(config)
    ctx: zmq.Context[Any] = zmq.Context()
    sock: zmq.Socket[Any] = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send(msgspec.json.encode({"token": token, **request}))
        if not sock.poll(int(timeout_s * 1000)):
            if request.get("action") == "status":
                raise UserError(
                    f"no answer from the engine at {endpoint} within {timeout_s:g} s; is "
                    "`hft engine` running with this deployment file?"
                )
            raise UserError(
                f"no answer yet from the engine at {endpoint} within {timeout_s:g} s; command "
                f"{request.get('command_id', '')} was sent and may still be applied: "
                "`hft command status` lists the commands the engine applied (recent_commands)"
            )
        try:
            return msgspec.json.decode(sock.recv(), type=m.CommandReply)
        except msgspec.DecodeError as exc:
            raise UserError(f"{endpoint}: the answer is not an engine reply ({exc})") from None
    finally:
        sock.close()
        ctx.term()


def run(config: DeploymentConfig, args: argparse.Namespace) -> int:
    scope, target = "account", ""
    if (args.action == "cancel_order") != bool(args.order):
        raise UserError(
            "hft command: cancel_order takes --order ID, and --order is for cancel_order only"
        )
    if args.order:
        target = args.order
    elif args.agent:
        scope, target = "agent", args.agent
    elif args.instrument:
        scope, target = "instrument", args.instrument
    elif args.everything:
        scope = "global"
    request = {"action": args.action, "scope": scope, "target": target, "requester": "cli",
               "command_id": uuid.uuid4().hex[:12]}  # fmt: skip
    reply = send_command(config, request, args.timeout)
    if reply.status is not None:
        print(json.dumps(reply.status, indent=2))
    else:
        print(("ok: " if reply.ok else "refused: ") + reply.text)
    sys.stdout.flush()
    return 0 if reply.ok else 1
