"""Adapters: where the engine's orders go (the paper simulator, the CTP trading front)."""
