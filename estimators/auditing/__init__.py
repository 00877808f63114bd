r"""Stage ``auditing``: which estimator does a user's loss compute, and how wrong is it at their batch size?

* :mod:`.fixtures` -- the fixed, seeded fixture batches on which every known bug shows;
* :mod:`.candidates` -- every registered minibatch estimator and the known mutations, with words,
  formula, bug and fix;
* :mod:`.harness` -- calling the user's function and reading what it returns;
* :mod:`.matching` -- exact matches within float32 rounding, offset signatures;
* :mod:`.accuracy` -- bias, sd and RMSE against exact references at the user's B and N;
* :mod:`.report` -- :class:`AuditReport`, its text and JSON forms;
* :mod:`.loading` -- ``FILE.py:FUNCTION`` and ``MODULE:FUNCTION``;
* :mod:`.api` -- :func:`audit`.
"""
from .api import EXIT_CODES, audit
from .harness import AuditError
from .loading import load_function
from .report import AuditReport

__all__ = ["audit", "AuditReport", "AuditError", "EXIT_CODES", "load_function"]
