"""md_recorder: market data (CTP, simulated, replayed) into the tick journal and snapshot table."""
