"""How the worker, the simulator and the approval service are watched in production:
structured logs (logs.py), OpenTelemetry traces (tracing.py), Prometheus metrics
(metrics.py) and the worker's health endpoints (health.py)."""
