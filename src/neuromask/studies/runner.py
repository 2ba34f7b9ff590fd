"""Split into :mod:`neuromask.studies.run`, :mod:`~neuromask.studies.workspace`,
:mod:`~neuromask.studies.plans`, :mod:`~neuromask.studies.tables` and
:mod:`neuromask.metrics.sessions`; this path still works and warns."""

from neuromask._moved import forward

__getattr__ = forward(
    __name__,
    "neuromask.studies.run",
    "neuromask.studies.workspace",
    "neuromask.studies.plans",
    "neuromask.studies.tables",
    "neuromask.metrics.sessions",
)
