"""ZenML steps: thin adapters that turn artifacts into rxvision library calls and back.

Modules: ``data`` (load, validate, profile, split), ``training``, ``evaluation``,
``reference`` (drift reference features), ``registration`` (quality gate + Model Control
Plane), ``tracking`` (MLflow), ``common`` (artifact names and shared helpers), ``report_pages``
(reports as a static page plus the interactive HTML), ``step_output`` (the pipelines'
``on_init`` hook that keeps informational output out of the stored ERROR lines).
"""
