"""The approval service: people prove who they are (OIDC ID tokens, or Slack), and the
service sends their approvals and other actions to the run with a signed envelope
(runbook/envelope.py) the worker checks. See README: Approvals."""
