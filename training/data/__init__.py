"""Benchmark data for training: CoNLL readers, label vocabulary, image lookup, batching."""
