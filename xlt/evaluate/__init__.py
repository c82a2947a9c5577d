"""Evaluation: metrics, bootstrap confidence intervals, paired significance, language matrices."""
