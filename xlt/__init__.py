"""xlt: cross-lingual transfer of text classifiers as composable JSONL stages."""

__version__ = "0.1.0"
