"""J&F of the DAVIS 2017 toolkit (davis.py) and its CSV reports over results folders (report.py)."""

from lcm_jax.metrics.davis import (
    boundary_f,
    decay_bins,
    evaluate_sequence,
    jaccard,
    seg2bmap,
    statistics,
)
from lcm_jax.metrics.report import (
    DavisResults,
    ObjectScores,
    evaluate_davis,
    score_sequences,
    write_csvs,
)

__all__ = [
    "DavisResults",
    "ObjectScores",
    "boundary_f",
    "decay_bins",
    "evaluate_davis",
    "evaluate_sequence",
    "jaccard",
    "score_sequences",
    "seg2bmap",
    "statistics",
    "write_csvs",
]
