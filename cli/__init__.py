"""The ``runbook`` command line: start, plan, watch, approve, abort, list and audit runs."""
