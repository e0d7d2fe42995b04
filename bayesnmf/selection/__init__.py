"""Model and rank selection: evidence and stability.

:func:`rank_survey` fits a list of ranks and reports held-out evidence
(entry-wise and bi-cross-validation), the variational bound, PSIS-LOO,
consensus clustering of samples (cophenetic correlation, dispersion, PAC), the
silhouette stability of components across restarts, and ARD's effective rank.
:func:`fit_ard` estimates the rank from one over-specified ARD fit.
:func:`compare_likelihoods` ranks noise models by held-out predictive evidence.
"""

from bayesnmf.selection._ard import ARDResult, fit_ard, relevance_table
from bayesnmf.selection._bcv import bcv_folds, bcv_log_density
from bayesnmf.selection._compare import (
    LikelihoodComparison,
    compare_likelihoods,
    discretized_log_prob,
)
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
    default_evidence_priors,
    entry_folds,
    heldout_log_density,
    rank_survey,
)

__all__ = [
    "ARDResult",
    "LikelihoodComparison",
    "RankSurvey",
    "SilhouetteStability",
    "bcv_folds",
    "bcv_log_density",
    "compare_likelihoods",
    "connectivity",
    "consensus_clusters",
    "consensus_matrix",
    "consensus_order",
    "cophenetic_correlation",
    "default_evidence_priors",
    "discretized_log_prob",
    "dispersion",
    "entry_folds",
    "fit_ard",
    "heldout_log_density",
    "pac",
    "rank_survey",
    "relevance_table",
    "silhouette_stability",
]
