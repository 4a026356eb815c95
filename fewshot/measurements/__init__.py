"""The measurement scripts behind BENCHMARKS.md, one module per section.

Each is run by a thin ``bin/bench-*`` wrapper (``python -m fewshot.measurements.<name>``),
prints its figures and writes its section through :func:`section.update_section`.
"""
