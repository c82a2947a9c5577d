"""Training: labelled examples and batches (`data`), the loop and its state (`loop`, `state`),
the run every training command shares (`run`), `teach`, checkpoints and the tokenization cache."""
