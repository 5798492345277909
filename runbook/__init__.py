"""Runbook contracts: the request, the runbook as data, plans, status and report models.

Everything here is pure (no I/O, no clocks) so the workflow sandbox can import it and the
CLI, the activities and the tests share one definition of every payload.
"""
