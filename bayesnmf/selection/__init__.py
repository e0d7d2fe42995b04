"""Model and rank selection: stability of restarts.

Consensus clustering of samples (cophenetic correlation, dispersion, PAC) and the
silhouette stability of signatures across restarts.
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

__all__ = [
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
