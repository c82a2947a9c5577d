"""Classifier inference: `classifier` (the `Classifier` that eval, soft-label and distill use, and
the engine choice), `types` (what every engine shares: the `Engine` interface, `Inputs`,
`Outputs`, `softmax`), one module per engine (`torch_engine`, `ct2_engine`, `saved`) and their
common base for model directories (`model_dir`).

Nothing is imported here: import from the module that owns a name.
"""
