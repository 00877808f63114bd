r"""Stage 3, estimators of log q(z_i) and its marginals log q(z_id): one contract, one registry.

* :mod:`.api` -- :func:`log_aggregate_posterior`, the validated entry point;
* :mod:`.batch` -- :class:`Batch`, what every implementation receives;
* :mod:`.registry` -- :data:`ESTIMATORS` and the decorators that fill it;
* :mod:`.weights` -- the minibatch weight matrices (registry of weight kinds, cached);
* :mod:`.minibatch` -- naive, mws, mss, stratified, loo;
* :mod:`.published` -- mss_shipped, mss_per_dim, tc_no_constant (replicas, bugs included);
* :mod:`.importance` -- iwae; :mod:`.exact` -- exact.
"""
from . import exact, importance, minibatch, published  # noqa: F401  (register the built-in estimators)
from .api import log_aggregate_posterior, prepare
from .batch import Batch
from .importance import PROPOSALS
from .registry import ESTIMATORS, FAMILIES, EstimatorInfo, LogWeights, get_estimator, register_estimator

__all__ = ["log_aggregate_posterior", "prepare", "Batch", "ESTIMATORS", "FAMILIES", "EstimatorInfo", "LogWeights",
           "get_estimator", "register_estimator", "PROPOSALS"]
