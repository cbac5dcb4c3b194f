"""One-shot commands of ``hft``: doctor, journal, import, bench."""
