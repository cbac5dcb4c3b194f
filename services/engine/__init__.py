"""engine: strategy agents, risk gate, adapters, position ledger and event journal."""
