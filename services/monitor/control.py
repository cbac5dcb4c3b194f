"""Admin commands forwarded to an account's engine over its command socket (docs/monitor.md,
"Control"): the engine's own endpoint and token files (or ``HFT_ENGINE_TOKEN``), a ZMQ REQ
socket per command, the engine's reply returned as it gave it. The requester the engine
journals is ``monitor.NAME``, the name of the token that asked.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Final

import msgspec
import zmq
import zmq.asyncio

from contracts import messages as m
from contracts.monitor import Command, Reply

__all__ = ["REPLY_TIMEOUT_S", "EngineLink"]

REPLY_TIMEOUT_S: Final = 5.0


class EngineLink:
    """How to reach one account's engine: ``journal_dir/engine/command.endpoint`` (what the
    running engine bound) and its token (``engine_token``, else ``command.token``)."""

    def __init__(self, account: str, journal_dir: Path, engine_token: str | None) -> None:
        self.account = account
        self.root = journal_dir / "engine"
        self.engine_token = engine_token
        self._ctx = zmq.asyncio.Context.instance()

    def _endpoint_and_token(self) -> tuple[str, str] | str:
        try:
            endpoint = (self.root / "command.endpoint").read_text(encoding="utf-8").strip()
        except OSError:
            return f"the engine of {self.account} is not running (no {self.root}/command.endpoint)"
        if self.engine_token:
            return endpoint, self.engine_token
        try:
            return endpoint, (self.root / "command.token").read_text(encoding="utf-8").strip()
        except OSError:
            return (f"no token for the engine of {self.account}: set HFT_ENGINE_TOKEN for the "
                    "monitor as for the engine")  # fmt: skip

    async def send(self, command: Command, requester: str) -> Reply:
        command_id = command.command_id or uuid.uuid4().hex[:12]
        where = self._endpoint_and_token()
        if isinstance(where, str):
            return Reply(self.account, command_id, False, where)
        endpoint, token = where
        request = m.CommandRequest(token, command.action, command.scope, command.target,
                                   requester, command_id)  # fmt: skip
        sock: Any = self._ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(endpoint)
            await sock.send(msgspec.json.encode(request))
            if not await sock.poll(int(REPLY_TIMEOUT_S * 1000)):
                text = (f"no answer from the engine within {REPLY_TIMEOUT_S:g} s; it may still "
                        "apply the command: its status lists what it applied")  # fmt: skip
                return Reply(self.account, command_id, False, text)
            try:
                answer = msgspec.json.decode(await sock.recv(), type=m.CommandReply)
            except msgspec.DecodeError as exc:
                return Reply(self.account, command_id, False, f"not an engine reply: {exc}")
            return Reply(self.account, answer.command_id or command_id, answer.ok, answer.text)
        finally:
            sock.close()
