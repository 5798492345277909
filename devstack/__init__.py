"""devstack: one command for the whole local stack (Temporal dev server, GCP simulator, worker).

``python -m devstack up`` starts everything under ``./data/``, waits until each part is
healthy, prints where to go next, restarts a part that exits (devstack/supervisor.py)
and stops everything it started on Ctrl-C or SIGTERM.
Tests use :class:`devstack.stack.Stack` directly with their own ports and data directory.
"""
