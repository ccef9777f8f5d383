"""Realtime push: the event bus, and the SSE / WebSocket streams built on it."""
