"""Durable jobs: a transactional outbox table, a worker that claims and runs them, a schedule."""
