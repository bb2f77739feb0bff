"""ZenML pipelines. Each module exposes ``main(cfg, args) -> int`` for ``run.py`` (see its
docstring for the contract) next to the ``@pipeline`` function itself."""
