r"""Inspect an NMF model written as a NumPyro program, before anything is compiled.

The generic engines (stochastic VI and NUTS) accept the built-in
:class:`~bayesnmf.NMFModel` or a user's own program with the same call signature,

.. code-block:: python

    def model(X, mask=None, *, subsample_size=None): ...

whose latent sites include ``"W"`` of shape (n_features, rank) and ``"H"`` of
shape (rank, n_samples), both non-negative, and whose observed site ``"X"`` sits
inside plates over rows and columns, so that its pointwise log density has shape
(n_features, n_samples). Other latent sites (dispersions, per-feature scales,
...) are allowed. :func:`inspect_program` traces the program once on the data
and records every latent site: shape, support, plates, and whether it is local
to the plate over columns that minibatches subsample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.transforms import (
    ExpTransform,
    IndependentTransform,
    biject_to,
)

from ._init import random_init
from .model import NMFModel

__all__ = [
    "CustomModel",
    "Plate",
    "Program",
    "Site",
    "inspect_program",
    "point_init",
    "unconstrained_zero",
    "resolve_model",
]


@dataclass(frozen=True, eq=False)
class CustomModel:
    """A user's NumPyro program, wrapped so that results can describe it.

    Attributes
    ----------
    fn : callable or None
        The program, called as ``fn(X, mask, subsample_size=...)``; None after
        loading a saved result (a program cannot be saved).
    rank : int
        Number of components, read from the shape of the ``W`` site.
    name : str
        The program's qualified name.
    """

    fn: Callable
    rank: int
    name: str
    proper = True

    def __call__(self, X=None, mask=None, **kwargs):
        if self.fn is None:
            raise TypeError(
                f"model: the custom program {self.name} was not saved with the "
                "result (only its name and rank were); pass the program itself."
            )
        return self.fn(X, mask, **kwargs)

    def to_dict(self) -> dict:
        return {"kind": "custom", "name": self.name, "rank": self.rank}

    @classmethod
    def from_dict(cls, spec: dict) -> "CustomModel":
        """Rebuild from :meth:`to_dict`: name and rank, without the program."""
        return cls(fn=None, rank=int(spec["rank"]), name=str(spec["name"]))

    def describe(self) -> str:
        return f"rank {self.rank}, custom NumPyro model {self.name}"


def resolve_model(model, engine: str):
    """Check ``model`` and return ``(model_fn, finish)``.

    ``model_fn`` is the NumPyro program; ``finish(program)`` checks what needs
    the traced program (proper priors on W and H of a custom model) and returns
    the object stored as ``result.model``.
    """
    if isinstance(model, NMFModel):
        if not model.proper:
            raise ValueError(
                f"model: {engine} needs proper priors on W and H, got "
                f"prior_W={model.prior_W.describe()}, "
                f"prior_H={model.prior_H.describe()}. Use for example Gamma(1.0, "
                "1.0) or Exponential(1.0); flat priors suit only fit_map."
            )
        return model, lambda program: model
    if not callable(model) or isinstance(model, type):
        raise TypeError(
            "model: expected an NMFModel or a NumPyro program "
            f"model(X, mask=None, *, subsample_size=None), got {model!r}."
        )
    name = getattr(model, "__qualname__", type(model).__name__)

    def finish(program):
        for site in ("W", "H"):
            if not program.site(site).proper:
                raise ValueError(
                    f"model: {engine} needs proper priors on W and H; site "
                    f"'{site}' of {name} has an improper (flat) prior."
                )
        return CustomModel(model, program.rank, name)

    return model, finish


@dataclass(frozen=True)
class Plate:
    """A plate of the program: name, full size and batch dimension (< 0)."""

    name: str
    size: int
    dim: int


@dataclass(frozen=True)
class Site:
    """A latent sample site of the program.

    Attributes
    ----------
    name : str
    shape : tuple of int
        Shape of its value on the full data.
    event_dim : int
        Number of rightmost dimensions that belong to one event.
    plates : tuple of Plate
        Plates around the site, full sizes.
    positive : bool
        Whether the support is the positive reals (a log transform maps it to R).
    proper : bool
        Whether the prior is a proper density (not ``ImproperUniform``).
    local : bool
        Whether the site sits in the plate over columns that minibatches
        subsample (only known when a batch size was asked for).
    support : Constraint
        The support (not part of equality or hashing).
    """

    name: str
    shape: tuple
    event_dim: int
    plates: tuple
    positive: bool
    proper: bool
    local: bool = False
    support: object = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class Program:
    """What :func:`inspect_program` learnt about a model on data of ``shape``.

    Attributes
    ----------
    sites : tuple of Site
        Latent sites in the order the program samples them.
    rank : int
        Columns of ``W``.
    shape : tuple of int
        ``(n_features, n_samples)``.
    column_plate : Plate or None
        The plate over columns that ``subsample_size`` subsamples; None when no
        batch size was asked for.
    batch_size : int or None
        Columns per minibatch.
    """

    sites: tuple
    rank: int
    shape: tuple
    column_plate: Plate | None = None
    batch_size: int | None = None

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)

    @property
    def global_sites(self) -> tuple:
        return tuple(s for s in self.sites if not s.local)

    @property
    def local_sites(self) -> tuple:
        return tuple(s for s in self.sites if s.local)


def _unwrap(fn):
    """Return the innermost distribution under Expanded/Independent/Masked."""
    while isinstance(
        fn, (dist.ExpandedDistribution, dist.Independent, dist.MaskedDistribution)
    ):
        fn = fn.base_dist
    return fn


def _is_positive(support) -> bool:
    try:
        transform = biject_to(support)
    except NotImplementedError:
        return False
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    return isinstance(transform, ExpTransform)


def unconstrained_zero(msg):
    """Give a feasible value without sampling: 0 on the unconstrained scale.

    Sampling from some priors (gamma) compiles a rejection sampler, seconds of
    work that inspecting a program does not need.
    """
    if msg["type"] != "sample" or msg["is_observed"]:
        return None
    fn = msg["fn"]
    if fn.support.is_discrete:
        return None
    transform = biject_to(fn.support)
    shape = tuple(msg["kwargs"].get("sample_shape", ())) + tuple(fn.shape())
    return transform(jnp.zeros(transform.inverse_shape(shape)))


def _trace(model_fn, X, mask, what, **kwargs):
    program = handlers.substitute(
        handlers.seed(model_fn, 0), substitute_fn=unconstrained_zero
    )
    try:
        return handlers.trace(program).get_trace(X, mask, **kwargs)
    except TypeError as err:
        if "subsample_size" in kwargs and "subsample_size" in str(err):
            raise ValueError(
                f"batch_size: minibatches need a model that accepts the keyword "
                f"subsample_size (like NMFModel.__call__); {what} does not ({err})."
            ) from err
        raise TypeError(
            f"model: could not run {what} as model(X, mask) on the data: {err}"
        ) from err
    except Exception as err:
        raise ValueError(
            f"model: running {what} as model(X, mask) on the data failed: "
            f"{type(err).__name__}: {err}"
        ) from err


def inspect_program(model_fn, X, mask, *, batch_size=None, what="the model"):
    """Trace the program once and check what the generic engines need.

    Parameters
    ----------
    model_fn : callable
        The NumPyro program, ``model_fn(X, mask, subsample_size=None)``.
    X : jax.Array of shape (n_features, n_samples)
        The data, in the fit's precision.
    mask : jax.Array of shape (n_features, n_samples) or None
        1 where X is observed.
    batch_size : int, optional
        Columns per minibatch; the program is traced a second time with
        ``subsample_size=batch_size`` to find the column plate and local sites.
    what : str
        How error messages name the program.

    Returns
    -------
    Program

    Raises
    ------
    ValueError
        If ``W``, ``H`` or ``X`` is missing or has the wrong shape, if ``W`` or
        ``H`` is not non-negative, or if the program cannot subsample columns.
    NotImplementedError
        For discrete latent sites.
    """
    m, n = X.shape
    tr = _trace(model_fn, X, mask, what)
    latent = {
        k: s for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]
    }

    obs = tr.get("X")
    if obs is None or obs["type"] != "sample" or not obs["is_observed"]:
        raise ValueError(
            f"model: expected {what} to observe the data at a sample site named "
            "'X' (numpyro.sample('X', ..., obs=X)); no such observed site was found."
        )
    if tuple(obs["fn"].batch_shape) != (m, n):
        raise ValueError(
            f"model: the observed site 'X' must sit inside plates over rows and "
            f"columns so that its log density has shape {(m, n)}; got batch shape "
            f"{tuple(obs['fn'].batch_shape)} (drop .to_event on the likelihood)."
        )
    for name in ("W", "H"):
        if name not in latent:
            raise ValueError(
                f"model: expected a latent sample site named '{name}' in {what}; "
                f"found latent sites {sorted(latent)}."
            )
    w_shape = np.shape(latent["W"]["value"])
    rank = int(w_shape[-1]) if len(w_shape) == 2 else -1
    for name, expected in (("W", (m, rank)), ("H", (rank, n))):
        got = tuple(np.shape(latent[name]["value"]))
        if rank < 1 or got != expected:
            raise ValueError(
                f"model: site '{name}' should have shape {expected} "
                f"(n_features={m}, n_samples={n}, rank read from W); got {got}."
            )

    sites = []
    for name, s in latent.items():
        fn = s["fn"]
        if fn.support.is_discrete:
            raise NotImplementedError(
                f"model: latent site '{name}' is discrete; the generic engines "
                "(SVI, NUTS) need continuous latent sites. Marginalise it out."
            )
        positive = _is_positive(fn.support)
        if name in ("W", "H") and not positive:
            raise ValueError(
                f"model: site '{name}' must be non-negative (a prior supported on "
                f"the positive reals), got support {fn.support}."
            )
        plates = tuple(Plate(f.name, int(f.size), int(f.dim))
                       for f in s["cond_indep_stack"])
        sites.append(Site(
            name=name,
            shape=tuple(np.shape(s["value"])),
            event_dim=len(fn.event_shape),
            plates=plates,
            positive=positive,
            proper=not isinstance(_unwrap(fn), dist.ImproperUniform),
            support=fn.support,
        ))
    program = Program(tuple(sites), rank, (m, n))
    if batch_size is None:
        return program
    return _with_column_plate(program, model_fn, X, mask, int(batch_size), what)


def _with_column_plate(program, model_fn, X, mask, batch_size, what):
    m, n = program.shape
    tr = _trace(model_fn, X, mask, what, subsample_size=batch_size)
    subsampled = {
        s["name"] for s in tr.values()
        if s["type"] == "plate" and s["args"][0] == n and s["args"][1] == batch_size
    }
    hint = (
        "Write the plate over columns as numpyro.plate(name, n_samples, "
        "subsample_size=subsample_size) around H and X, as NMFModel does."
    )
    if len(subsampled) != 1:
        found = "none" if not subsampled else sorted(subsampled)
        raise ValueError(
            f"batch_size: {what} ignored subsample_size={batch_size}: expected one "
            f"plate of size n_samples={n} subsampled to {batch_size} columns, found "
            f"{found}. {hint}"
        )
    name = subsampled.pop()

    def frame(site_name):
        stack = tr[site_name]["cond_indep_stack"]
        return next((f for f in stack if f.name == name), None)

    h_frame = frame("H")
    if h_frame is None or frame("W") is not None:
        raise ValueError(
            f"batch_size: H must sit in the subsampled plate {name!r} and W outside "
            f"it. {hint}"
        )
    obs_shape = tuple(tr["X"]["fn"].batch_shape)
    if obs_shape != (m, batch_size):
        raise ValueError(
            f"batch_size: with subsample_size={batch_size} the observed site 'X' "
            f"should have batch shape {(m, batch_size)}, got {obs_shape}. Index "
            f"the data with the plate's indices (X[:, idx]). {hint}"
        )
    sites = []
    for site in program.sites:
        f = frame(site.name)
        if f is not None and f.dim != h_frame.dim:
            raise ValueError(
                f"batch_size: plate {name!r} has dim {f.dim} at site "
                f"'{site.name}' but {h_frame.dim} at 'H'; use one dim per plate."
            )
        sites.append(Site(**{**site.__dict__, "local": f is not None}))
    return Program(
        tuple(sites), program.rank, program.shape,
        column_plate=Plate(name, n, int(h_frame.dim)), batch_size=batch_size,
    )


def point_init(model, model_fn, program, X, mask, key):
    """Return a feasible start: data-scaled W and H, the prior mean elsewhere.

    ``W`` and ``H`` get scaled absolute normals with ``E[(WH)_ij]`` of the order
    of the data (:func:`bayesnmf._init.random_init`). Other sites get their
    prior mean given the others (0 on the unconstrained scale where the mean is
    not finite or not defined, as for improper priors); for a built-in model,
    the likelihood's own parameters get its data-based start (for example the
    residual variance for ``noise_var``). Nothing is sampled from the priors.

    Returns
    -------
    dict of str to jax.Array
        Constrained values of every latent site.
    """
    W, H = random_init(key, X, mask, program.rank)
    values = {"W": W, "H": H}
    tr = handlers.trace(
        handlers.substitute(
            handlers.seed(model_fn, 0),
            substitute_fn=lambda msg: values.get(msg["name"], _prior_mean(msg)),
        )
    ).get_trace(X, mask)
    values.update(
        {s.name: jnp.asarray(tr[s.name]["value"], X.dtype) for s in program.sites}
    )
    values["W"], values["H"] = W, H
    if isinstance(model, NMFModel):
        values.update(model.likelihood.init_params(X, mask, W, H))
    return values


def _prior_mean(msg):
    value = unconstrained_zero(msg)
    if value is None:
        return None
    try:
        mean = jnp.broadcast_to(msg["fn"].mean, value.shape)
    except (NotImplementedError, ValueError, TypeError):
        return value
    ok = jnp.all(jnp.isfinite(mean)) & jnp.all(msg["fn"].support(mean))
    return mean if bool(ok) else value
