"""md_recorder's errors, one hierarchy: ``MdRecorderError`` is what it raises of its own (a
user's mistake reaches the command line as ``contracts.errors.UserError`` instead)."""

from __future__ import annotations

__all__ = ["FileProblem", "MdRecorderError"]


class MdRecorderError(Exception):
    """Base of md_recorder's own errors."""


class FileProblem(MdRecorderError):
    """A file that cannot be read through (not gzip, cut short, not text): reported, skipped."""
