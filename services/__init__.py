"""The suite's processes and tools.

``services.md_recorder``, ``services.engine`` and ``services.monitor`` are independent processes:
they depend on ``contracts`` and ``libshm`` and never import each other. ``services.cli`` (the
``hft`` command) is the composition root; ``services.tools`` holds the one-shot commands.
"""
