"""The paper-trading simulator (docs/paper.md): an engine adapter that fills against the recorded or
live market with queue position, latency, the front's and the exchange's refusals, fees and
margin. Cores with no I/O, deterministic for a given seed and input."""
