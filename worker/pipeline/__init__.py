"""The worker's main loop: micro-batching, bounded in-flight work, commit after Redis acknowledged."""
