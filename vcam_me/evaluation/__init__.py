"""Quality measurement (``docs/metrics.md``): pure metrics and the closed-loop evaluation.

:mod:`vcam_me.evaluation.metrics` holds pure functions on arrays and imports no stage;
:mod:`vcam_me.evaluation.closed_loop` drives stages that the composition root builds.
Neither is imported by the real-time path.
"""
