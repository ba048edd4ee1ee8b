"""Validation: the same images through every runtime, judged against the reference.

- preprocess: a model's preprocessor_config.json as explicit steps
- dataset:    class folders -> labelled, preprocessed arrays; bad files reported
- metrics:    pure functions over logits
- budgets:    limits per variant, as data
- worker:     runs one artifact in its own process
- harness:    runs every variant, applies budgets
- report:     report.json and report.md
"""
