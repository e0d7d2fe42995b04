"""Model and rank selection: evidence and stability.

:func:`rank_survey` fits a list of ranks and reports held-out evidence, the
variational bound, consensus clustering of samples (cophenetic correlation,
dispersion, PAC) and the silhouette stability of components across restarts.
"""

from bayesnmf.selection._consensus import (
    SilhouetteStability,
    connectivity,
    consensus_clusters,
    consensus_matrix,
    consensus_order,
    cophenetic_correlation,
    dispersion,
    pac,
    silhouette_stability,
)

from bayesnmf.selection._survey import (
    RankSurvey,
    entry_folds,
    heldout_log_density,
    rank_survey,
)

__all__ = [
    "RankSurvey",
    "entry_folds",
    "heldout_log_density",
    "rank_survey",
    "SilhouetteStability",
    "connectivity",
    "consensus_clusters",
    "consensus_matrix",
    "consensus_order",
    "cophenetic_correlation",
    "dispersion",
    "pac",
    "silhouette_stability",
]
