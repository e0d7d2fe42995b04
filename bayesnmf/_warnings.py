"""Warning categories."""

__all__ = ["ConvergenceWarning"]


class ConvergenceWarning(UserWarning):
    """An iterative fit stopped before meeting its tolerance, or a sampler or
    diagnostic reports a problem (divergences, large R-hat, large Pareto k)."""
