"""libshm: the shared-memory data plane (tick journal, snapshot table).

It stores records: no network I/O, no knowledge of CTP, and it imports nothing from ``contracts``
or ``services``.
"""
