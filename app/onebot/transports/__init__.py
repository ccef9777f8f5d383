"""The four OneBot v11 transports: forward WebSocket (we connect), reverse WebSocket (the
implementation connects to us), HTTP API (we POST actions) and HTTP POST (it POSTs events)."""
