"""Kafka plumbing of the worker: client factories, offset bookkeeping, the dead-letter topic."""
