"""Offline evolution of Hebbian rules (or static weights) with OpenAI-ES.

``openai_es`` (the algorithm, ask/tell over an explicit state), ``shaping`` (fitness to utilities:
centred ranks, per-body ranks, the L2 penalty), ``fitness`` (the paper's distance walked, over damaged
bodies), ``backends`` (local process pool or Ray), ``run`` (checkpointed,
resumable runs), ``config`` (validated YAML), ``cli`` (the ``evolve`` command).
"""
