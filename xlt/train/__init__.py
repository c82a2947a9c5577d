"""Training: labelled examples, length-grouped batches, the accelerate-based loop, checkpoints."""
