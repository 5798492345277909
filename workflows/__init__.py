"""Temporal workflows: the remediation runbook interpreter and the plan-only workflow."""
