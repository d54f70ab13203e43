"""Parts of the pipeline benchmark (benchmarks/pipeline.py): one job per module."""
