"""Typed search-attribute keys. Register them on the server before the first run
(``temporal server start-dev --search-attribute RemediationIncident=Keyword ...``)."""

from temporalio.client import Client
from temporalio.common import SearchAttributeKey

from runbook.messages import SA_INCIDENT, SA_PHASE, SA_STATE

INCIDENT = SearchAttributeKey.for_keyword(SA_INCIDENT)
PHASE = SearchAttributeKey.for_int(SA_PHASE)
STATE = SearchAttributeKey.for_keyword(SA_STATE)

ALL = [INCIDENT, PHASE, STATE]


async def register(client: Client) -> None:
    """Register the keys through the operator API, for servers not started with them
    (the time-skipping test server fails a workflow task forever on an unknown key)."""
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
        namespace=client.namespace,
        # The proto enum has the same numbers as the SDK's typed enum.
        search_attributes={key.name: int(key.indexed_value_type) for key in ALL}))
