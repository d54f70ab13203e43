"""Entity-level scoring of tag sequences, seqeval-compatible as the published MNER code scores."""

from training.evaluation.scores import EntityScores, TypeScore, score_tags

__all__ = ["EntityScores", "TypeScore", "score_tags"]
