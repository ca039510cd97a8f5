"""Reports: a dataset's runs -> tables a paper can use, one per file, in Markdown, LaTeX and
HTML (`report`), and a declared study's table (`studies`).

inputs (reading and checking) -> analysis (every statistic, computed once: cells, statistics,
reference) -> tables and comparisons (one table each, marked up by a dialect) -> layout (the
templates) and figures. Nothing formats numbers but the dialects; nothing computes but analysis.
"""
