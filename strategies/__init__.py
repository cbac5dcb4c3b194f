"""Example agents. Reference one from a deployment file as ``strategies.quoter:Quoter``."""
