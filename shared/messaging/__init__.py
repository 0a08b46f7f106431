"""Messaging plumbing: app factory, envelope handling, idempotent consumer, outbox, dead letters."""
