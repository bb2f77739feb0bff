"""ZenML steps: thin adapters that turn artifacts into rxvision library calls and back.

Modules: ``data`` (load, validate, profile, split), ``training``, ``evaluation``,
``reference`` (drift reference features), ``registration`` (quality gate + Model Control
Plane), ``tracking`` (MLflow), ``common`` (artifact names and shared helpers).
"""
