"""Bringing data in (`xlt import`): `importer` streams records of the xlt contract from hub
datasets, `save_to_disk` directories, Parquet/CSV/TSV/JSON/JSONL, CoNLL-U and CoNLL-2003-style
files; `sources` opens a source as rows, `mapping` turns rows into records, `presets` holds the
benchmarks' field mappings, `conll` reads the CoNLL formats."""
