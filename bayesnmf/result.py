"""The result type every engine returns, with labelled views and exact saving."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model import NMFModel

__all__ = ["NMFResult", "normalize"]

_FORMAT = "bayesnmf-result"
_VERSION = 1


def normalize(W: np.ndarray, H: np.ndarray):
    """Put factors on the reporting scale: columns of W sum to one.

    The column sums of W move into the rows of H, so ``W @ H`` is unchanged.
    Works on single factors and on stacks ``(..., m, r)``, ``(..., r, n)``; a
    column of zeros stays zero.
    """
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    s = W.sum(axis=-2)
    safe = np.where(s > 0, s, 1.0)
    return W / safe[..., None, :], H * s[..., :, None]


@dataclass
class NMFResult:
    """A fitted NMF model.

    Attributes
    ----------
    model : NMFModel
        Rank, likelihood and priors that were fitted.
    method : str
        Engine: ``"map"``, ``"vi"`` or ``"nuts"``.
    W_raw : ndarray of shape (n_features, rank)
        Point estimate of W as the engine left it (best restart).
    H_raw : ndarray of shape (rank, n_samples)
        Point estimate of H as the engine left it (best restart).
    params : dict of str to float
        Estimated likelihood parameters (for example ``noise_var``).
    objective : float
        Final objective of the best restart: the negative log joint density
        for MAP (constants included); the negative ELBO for VI.
    objective_name : str
        What ``objective`` is.
    trace : ndarray of shape (n_checks,)
        Objective of the best restart at the iterations in ``trace_iter``.
    trace_iter : ndarray of shape (n_checks,)
        Iteration numbers of ``trace`` (0 is the starting point).
    n_iter : int
        Iterations run by the best restart.
    converged : bool
        Whether the best restart met the tolerance before the iteration cap.
    feature_names, sample_names : list of str
        Row and column labels of X.
    restarts : dict of str to ndarray
        Every restart: ``W_raw`` (T, m, r), ``H_raw`` (T, r, n), ``objective``
        (T,), ``n_iter`` (T,), ``converged`` (T,), ``trace`` (T, n_checks) padded
        with NaN, and the likelihood parameters, each with a leading restart axis.
    best_restart : int
        Index of the restart kept as the point estimate.
    settings : dict
        Engine settings (seed, restarts, initialisation, tolerance, ...).
    draws : dict of str to ndarray, optional
        Posterior (or variational) draws with leading (chain, draw) axes.
    extra : dict
        Engine-specific arrays and numbers (variational parameters, ...).
    """

    model: NMFModel
    method: str
    W_raw: np.ndarray
    H_raw: np.ndarray
    params: dict
    objective: float
    objective_name: str
    trace: np.ndarray
    trace_iter: np.ndarray
    n_iter: int
    converged: bool
    feature_names: list[str]
    sample_names: list[str]
    restarts: dict = field(default_factory=dict)
    best_restart: int = 0
    settings: dict = field(default_factory=dict)
    draws: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    # -- reporting scale ------------------------------------------------------
    @property
    def rank(self) -> int:
        return self.model.rank

    @property
    def W(self) -> np.ndarray:
        """W of shape (n_features, rank), columns summing to one."""
        return normalize(self.W_raw, self.H_raw)[0]

    @property
    def H(self) -> np.ndarray:
        """H of shape (rank, n_samples), carrying the scale of W."""
        return normalize(self.W_raw, self.H_raw)[1]

    @property
    def component_names(self) -> list[str]:
        return [f"C{k + 1}" for k in range(self.rank)]

    def reconstruction(self) -> np.ndarray:
        """``W @ H`` of shape (n_features, n_samples)."""
        return self.W_raw @ self.H_raw

    def W_frame(self, normalized: bool = True):
        """W as a pandas DataFrame, features x components."""
        import pandas as pd

        W = self.W if normalized else self.W_raw
        return pd.DataFrame(W, index=self.feature_names, columns=self.component_names)

    def H_frame(self, normalized: bool = True):
        """H as a pandas DataFrame, components x samples."""
        import pandas as pd

        H = self.H if normalized else self.H_raw
        return pd.DataFrame(H, index=self.component_names, columns=self.sample_names)

    def summary(self) -> str:
        """A short readable account of the fit."""
        lines = [
            f"bayesnmf {self.method.upper()} fit: {self.model.describe()}",
            f"data: {len(self.feature_names)} features x {len(self.sample_names)} "
            "samples",
            f"{self.objective_name}: {self.objective:.6g}",
            f"iterations: {self.n_iter} "
            f"({'converged' if self.converged else 'NOT converged'})",
        ]
        if self.restarts:
            obj = np.asarray(self.restarts["objective"])
            conv = np.asarray(self.restarts["converged"])
            lines.append(
                f"restarts: {obj.size}, best #{self.best_restart}, "
                f"{int(conv.sum())} converged, objective range "
                f"[{np.nanmin(obj):.6g}, {np.nanmax(obj):.6g}]"
            )
        for k, v in self.params.items():
            lines.append(f"{k}: {v:.6g}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"NMFResult(method={self.method!r}, rank={self.rank}, "
            f"shape=({len(self.feature_names)}, {len(self.sample_names)}), "
            f"{self.objective_name}={self.objective:.6g}, converged={self.converged})"
        )

    # -- files ----------------------------------------------------------------
    def save(self, path) -> Path:
        """Save to a ``.npz`` file; :meth:`load` gives back an equal result.

        Arrays are stored bit for bit; model, labels and settings as JSON.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else (
                path.with_suffix(".npz")
            )
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "model": self.model.to_dict(),
            "method": self.method,
            "params": {k: float(v) for k, v in self.params.items()},
            "objective": float(self.objective),
            "objective_name": self.objective_name,
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "feature_names": list(self.feature_names),
            "sample_names": list(self.sample_names),
            "best_restart": int(self.best_restart),
            "settings": self.settings,
            "restart_keys": sorted(self.restarts),
            "draw_keys": sorted(self.draws),
            "extra_keys": sorted(k for k, v in self.extra.items()
                                 if isinstance(v, np.ndarray)),
            "extra_scalars": {k: v for k, v in self.extra.items()
                              if not isinstance(v, np.ndarray)},
        }
        arrays = {
            "W_raw": self.W_raw,
            "H_raw": self.H_raw,
            "trace": self.trace,
            "trace_iter": self.trace_iter,
        }
        arrays.update({f"restarts/{k}": np.asarray(v)
                       for k, v in self.restarts.items()})
        arrays.update({f"draws/{k}": np.asarray(v) for k, v in self.draws.items()})
        arrays.update({f"extra/{k}": self.extra[k] for k in meta["extra_keys"]})
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path) -> "NMFResult":
        """Load a result written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"path: {path} is not a saved bayesnmf result.")
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
        extra = {k: arrays[f"extra/{k}"] for k in meta["extra_keys"]}
        extra.update(meta["extra_scalars"])
        spec = meta["model"]
        if spec.get("kind") == "custom":
            from ._program import CustomModel

            model = CustomModel.from_dict(spec)
        else:
            model = NMFModel.from_dict(spec)
        return cls(
            model=model,
            method=meta["method"],
            W_raw=arrays["W_raw"],
            H_raw=arrays["H_raw"],
            params=meta["params"],
            objective=meta["objective"],
            objective_name=meta["objective_name"],
            trace=arrays["trace"],
            trace_iter=arrays["trace_iter"],
            n_iter=meta["n_iter"],
            converged=meta["converged"],
            feature_names=meta["feature_names"],
            sample_names=meta["sample_names"],
            restarts={k: arrays[f"restarts/{k}"] for k in meta["restart_keys"]},
            best_restart=meta["best_restart"],
            settings=meta["settings"],
            draws={k: arrays[f"draws/{k}"] for k in meta["draw_keys"]},
            extra=extra,
        )
