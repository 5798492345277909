"""Typed search-attribute keys. Register them on the server before the first run
(``temporal server start-dev --search-attribute RemediationIncident=Keyword ...``)."""

from temporalio.common import SearchAttributeKey

from runbook.messages import SA_INCIDENT, SA_PHASE, SA_STATE

INCIDENT = SearchAttributeKey.for_keyword(SA_INCIDENT)
PHASE = SearchAttributeKey.for_int(SA_PHASE)
STATE = SearchAttributeKey.for_keyword(SA_STATE)

ALL = [INCIDENT, PHASE, STATE]
