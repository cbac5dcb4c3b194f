"""Monitor tokens: grants by token, constant-time comparison against every token, the limit on
failed attempts per address on an injected clock, and the credentials file's token tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.credentials import load_credentials
from contracts.errors import UserError
from services.monitor.auth import FAILURES_ALLOWED, Grant, Tokens, TooManyFailures

SECOND = 1_000_000_000
A_TOKEN = "a" * 40
OPS_TOKEN = "o" * 40


def credentials(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_each_token_gets_its_grant_and_nothing_else_gets_one(tmp_path: Path) -> None:
    path = credentials(
        tmp_path,
        f'''
[[monitor_tokens]]
name = "desk-a"
token = "{A_TOKEN}"
role = "viewer"
accounts = ["A"]
''',
    )
    tokens = Tokens(load_credentials(path, {"HFT_MONITOR_ADMIN_TOKEN": OPS_TOKEN}))
    assert tokens.grant(A_TOKEN) == Grant("desk-a", "viewer", ("A",))
    assert tokens.grant(OPS_TOKEN) == Grant("admin", "admin", ("*",))
    for wrong in ("", A_TOKEN[:-1], A_TOKEN + "a", OPS_TOKEN.upper(), "é" * 40):
        assert tokens.grant(wrong) is None
    viewer = tokens.grant(A_TOKEN)
    assert viewer is not None and viewer.visible(["A", "B"]) == ["A"]


@pytest.mark.parametrize(("table", "says"), [
    ('name = "x"\ntoken = "short"\nrole = "viewer"',
     "monitor_tokens[0].token: must be a string of at least 32 characters"),
    (f'name = "x"\ntoken = "{A_TOKEN}"\nrole = "boss"', "monitor_tokens[0].role: Input should be"),
    (f'name = "x"\ntoken = "{A_TOKEN}"\nrole = "viewer"\naccount = ["A"]',
     "monitor_tokens[0].account: Extra inputs"),
])  # fmt: skip
def test_a_bad_token_table_is_one_line_that_never_shows_the_token(
    tmp_path: Path, table: str, says: str
) -> None:
    path = credentials(tmp_path, f"[[monitor_tokens]]\n{table}\n")
    with pytest.raises(UserError) as error:
        load_credentials(path, {})
    assert says in str(error.value)
    assert "short" not in str(error.value) and A_TOKEN not in str(error.value)
    assert "not 5" not in str(error.value)  # not even the token's length


def test_an_address_is_refused_for_a_minute_after_ten_failures_in_a_minute() -> None:
    limit = TooManyFailures()
    t = 1_000 * SECOND
    for i in range(FAILURES_ALLOWED - 1):
        assert not limit.failed("10.0.0.1", t + i * SECOND)
    assert not limit.refused("10.0.0.1", t + 9 * SECOND)
    assert not limit.failed("10.0.0.2", t)  # another address is counted apart
    assert limit.failed("10.0.0.1", t + 9 * SECOND)  # the tenth within the minute
    assert limit.refused("10.0.0.1", t + 10 * SECOND)
    assert limit.refused("10.0.0.1", t + 68 * SECOND)
    assert not limit.refused("10.0.0.1", t + 69 * SECOND)  # a minute after the tenth
    slow = TooManyFailures()  # failures spread over more than a minute never add up
    assert not any(slow.failed("10.0.0.3", t + i * 7 * SECOND) for i in range(30))
