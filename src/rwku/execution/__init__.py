"""Execution: how the units of every command are planned, run and stored.

:mod:`~rwku.execution.plan` compiles a job's unit tasks into one plan (each with its declared key from
:mod:`~rwku.execution.key`) and says which are stored and which will run; :mod:`~rwku.execution.executors` runs
them in this process or on Ray, with retries; :mod:`~rwku.execution.run` drives an executor over a plan;
:mod:`~rwku.execution.store` writes a unit's files and aggregates every stored unit into the folder means;
:mod:`~rwku.execution.resources` estimates the memory a unit needs. Import the module you need; this package
only imports :mod:`rwku.knowledge`, so that every model a unit may name (``smollm2-135m-demo``, built on first use)
is registered with the loader before a key or a model is asked for.
"""

import rwku.knowledge  # noqa: F401  (registers the planted models with the loader)
