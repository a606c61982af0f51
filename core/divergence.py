"""The squared Jensen-Shannon divergence between two count vectors: how the project compares distributions of
concepts (negatives against positives, decoded marginals before and after exclusion, samples against the seed set).
"""

from __future__ import annotations

import numpy as np


def squared_jsd(p_counts, q_counts) -> float:
    """Squared Jensen-Shannon distance in bits (the divergence, in [0, 1]) between two count vectors, each
    normalised here; NaN where either has no counts."""
    from scipy.spatial.distance import jensenshannon

    p, q = np.asarray(p_counts, dtype=float), np.asarray(q_counts, dtype=float)
    if p.sum() == 0 or q.sum() == 0:
        return float("nan")
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2) ** 2)
