"""`xlt analyze`: why transfer works or fails: cross-lingual alignment of a model's representations,
teacher-student distances, per-layer curves and pictures.

- `xlt.analyze.metrics`: the numbers, plain numpy functions of vectors (no model)
- `xlt.analyze.represent`: the one module that imports inference code (models, batching)
- `xlt.analyze.collect`: streams parallel records into vectors and (target, source) pairs
- `xlt.analyze.report`: the report from the collected vectors, and its tables on stderr
- `xlt.analyze.plots`: the pictures
- `xlt.analyze.stage`: the stage as plain functions: `AnalyzeConfig`, `load_models`, `analyze`,
  `draw_plots` (the CLI, `xlt.cli.analyze`, stages and writes the outputs)
"""
