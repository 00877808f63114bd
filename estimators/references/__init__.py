r"""Stage 5, exact references of a posterior field: every quantity's value, se and method.

* :mod:`.api` -- :func:`exact_references` (picks the method per quantity and reports it);
* :mod:`.quadrature` -- adaptive Gauss-Legendre quadrature of KL(q || N(0, I)) in one or two dimensions;
* :mod:`.monte_carlo` -- the stratified Monte Carlo reference of kl_agg with control variates (every
  component, or a sub-sample of them; ``target_se`` picks the draws);
* :mod:`.executor` -- where the Monte Carlo's chunks of draws are evaluated (:data:`~.executor.SERIAL`: here);
* :mod:`.brackets` -- certified bounds around every reference;
* :mod:`.structure` -- product grids and duplicate components (closed forms, cheaper quadratures).
"""
from .api import QUADRATURE_BUDGET, QUANTITIES, exact_references
from .structure import is_product_grid

__all__ = ["exact_references", "QUANTITIES", "QUADRATURE_BUDGET", "is_product_grid"]
