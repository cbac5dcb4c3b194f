"""Opening tick files for an import: text of any encoding spreadsheets write, gzip, the header
checked, and one clear line for a file that cannot be read."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

from contracts.errors import UserError
from services.md_recorder.errors import FileProblem

__all__ = ["FILE_ERRORS", "BadInput", "header", "open_text", "why_unreadable"]


class BadInput(UserError):
    """A file that cannot be imported at all (wrong format, missing columns, unreadable)."""


FILE_ERRORS: Final = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def open_text(path: Path) -> IO[str]:
    """The file as text: gzip-compressed if it ends in ``.gz``; UTF-8, or UTF-16 or UTF-8 with a
    byte-order mark (what spreadsheet programs write)."""
    try:
        raw: Any = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115 (the wrapper returned closes it)
        try:
            head = raw.peek(4)[:4]
        except (OSError, EOFError) as exc:
            raw.close()
            raise FileProblem(why_unreadable(path, exc)) from None
        encoding = "utf-8"
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            encoding = "utf-16"
        elif head.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8-sig"
        return io.TextIOWrapper(raw, encoding=encoding, newline="")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory; give the files in it") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None


def why_unreadable(path: Path, exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile):
        return "not a gzip file, though its name ends in .gz; rename it or compress it"
    if isinstance(exc, (EOFError, zlib.error)):
        return f"the compressed data is cut short or damaged ({exc}); fetch the file again"
    if isinstance(exc, UnicodeDecodeError):
        return (f"not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start} of a block); "
                "convert it, e.g. `iconv -f GB18030 -t UTF-8`")  # fmt: skip
    return f"cannot read: {getattr(exc, 'strerror', None) or exc}"


def header(path: Path, reader: Iterator[list[str]], needed: tuple[str, ...]) -> list[str]:
    """The header row, with every ``needed`` column in it."""
    try:
        found = [h.strip() for h in next(reader)]
    except StopIteration:
        raise BadInput(f"{path}: empty file") from None
    missing = [c for c in needed if c not in found]
    if missing:
        raise BadInput(
            f"{path}: missing columns {', '.join(missing)}; is this the right --format? "
            f"(found: {', '.join(found[:8])}{', ...' if len(found) > 8 else ''})"
        )
    return found
