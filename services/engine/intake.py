"""The command socket's framing and checks, with no I/O: a ROUTER message in, the reply envelope
and either a request or the reason it is refused out (docs/engine.md, "Commands").

Whatever arrives (any number of frames, any bytes, JSON of any shape) gets an answer or is
dropped; nothing here raises. The token is compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Final

import msgspec

from contracts import messages as m

__all__ = ["MAX_FRAMES", "MAX_REQUEST_BYTES", "Intake", "refusal"]

MAX_REQUEST_BYTES: Final = 4096
"""The largest frame the socket takes (ZMQ's MAXMSGSIZE: a larger one drops the peer)."""
MAX_FRAMES: Final = 8
"""More frames than this is not a client of ours: dropped without an answer."""


def refusal(text: str, command_id: str = "") -> bytes:
    return msgspec.json.encode(m.CommandReply(False, text, command_id))


class Intake:
    """Checks requests against the engine token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()
        self._decoder = msgspec.json.Decoder(m.CommandRequest)

    def parse(
        self, parts: Sequence[bytes]
    ) -> tuple[list[bytes] | None, m.CommandRequest | None, str]:
        """Split a ROUTER message (identity, the REQ delimiter, the request) into the envelope
        to answer on and the request, or ``None`` and why not. A ``None`` envelope: drop it.
        """
        if len(parts) < 2 or len(parts) > MAX_FRAMES:
            return None, None, "malformed envelope"
        envelope = list(parts[:2]) if parts[1] == b"" else list(parts[:1])
        body = parts[len(envelope) :]
        if len(body) != 1:
            return envelope, None, f"a request is one frame of JSON, not {len(body)}"
        try:
            req = self._decoder.decode(body[0])
        except msgspec.DecodeError as exc:
            return envelope, None, f"bad request: {exc}"
        if not hmac.compare_digest(req.token.encode(), self._token):
            return envelope, None, "bad token"
        return envelope, req, ""
