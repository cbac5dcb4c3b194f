"""md_recorder: market data (CTP, simulated, replayed) into the tick journal and snapshot table.

Its errors are one hierarchy under ``MdRecorderError``."""

from services.md_recorder.errors import FileProblem, MdRecorderError

__all__ = ["FileProblem", "MdRecorderError"]
