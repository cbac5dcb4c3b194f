"""monitor: positions, orders, trades and PnL over WebSocket and ZMQ, and the dashboard."""
