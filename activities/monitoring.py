"""Cloud Monitoring v3: ensure an alert policy exists (by display name), delete it on undo.

Creating an alert policy is not idempotent (the server assigns the name), so the step
finds policies by display name first; a retried attempt whose checkpoint says the policy
was absent and that now finds it knows the earlier attempt created it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from googleapiclient.errors import HttpError
from temporalio import activity

from activities import errors
from activities.clients import GcpClients, execute, list_all
from activities.mutation import Mutation
from runbook import activity_names
from runbook.activity_io import AlertPolicyParams, CompensationInput, StepOutcome

ABSENT = "absent"


def list_alert_policies(clients: GcpClients, project: str) -> list[dict[str, Any]]:
    api = clients.discovery("monitoring").projects().alertPolicies()
    return list_all(api, api.list(name=f"projects/{project}"), "alertPolicies")


def find_policy(clients: GcpClients, project: str, display_name: str) -> dict[str, Any] | None:
    # Exact match on the client side: a list filter would need quoting rules for any
    # display name, and an exact comparison is what "already exists" means here.
    return next((pol for pol in list_alert_policies(clients, project)
                 if pol.get("displayName") == display_name), None)


def notification_channels(clients: GcpClients, project: str, kind: str) -> list[str]:
    api = clients.discovery("monitoring").projects().notificationChannels()
    channels = list_all(api, api.list(name=f"projects/{project}", filter=f'type="{kind}"'),
                        "notificationChannels")
    return [c["name"] for c in channels
            if c.get("enabled", True) and c.get("type", kind) == kind]


def metric_type(flt: str) -> str:
    """The metric type a filter names (``metric.type="..."``), or the filter itself."""
    m = re.search(r'metric\.type\s*=\s*"([^"]+)"', flt or "")
    return m.group(1) if m else flt


# Aligners whose aligned value is an order statistic: summing those across series means
# nothing, so they are reduced by the worst series instead.
_ORDER_ALIGNERS = ("ALIGN_PERCENTILE_", "ALIGN_MAX", "ALIGN_MIN")


def cross_series_reducer(aligner: str) -> str | None:
    """A reducer valid for what ``aligner`` leaves: REDUCE_MAX for order statistics
    (numeric), REDUCE_SUM for counts, rates, deltas and means (valid for numeric and
    DISTRIBUTION values); none after ALIGN_NONE, which allows no reducer."""
    if aligner == "ALIGN_NONE":
        return None
    return "REDUCE_MAX" if aligner.startswith(_ORDER_ALIGNERS) else "REDUCE_SUM"


def policy_body(p: AlertPolicyParams, channels: list[str]) -> dict[str, Any]:
    ratio = p.denominator_filter is not None
    # The aligner must fit the metric's kind and value type (GCP_FIDELITY A4): the step
    # names it, since only the runbook knows which metric it watches.
    aggregation: dict[str, Any] = {"alignmentPeriod": "60s", "perSeriesAligner": p.aligner}
    reducer = cross_series_reducer(p.aligner)
    if ratio and reducer:
        # Numerator and denominator are summed per service, so the ratio is per service.
        aggregation["crossSeriesReducer"] = reducer
        aggregation["groupByFields"] = ["resource.label.service_name"]
    elif reducer == "REDUCE_MAX":
        # An order statistic is judged on the worst series. Any other plain threshold is
        # judged per series: summing would add up the means of different resources.
        aggregation["crossSeriesReducer"] = reducer
    threshold: dict[str, Any] = {
        "filter": p.metric_filter, "aggregations": [aggregation],
        "comparison": p.comparison, "thresholdValue": p.threshold,
        "duration": f"{p.duration_s}s", "trigger": {"count": 1},
    }
    if ratio:
        threshold |= {"denominatorFilter": p.denominator_filter,
                      "denominatorAggregations": [dict(aggregation)]}
    op = ">" if p.comparison == "COMPARISON_GT" else "<"
    body: dict[str, Any] = {
        "displayName": p.display_name, "combiner": "OR", "severity": p.severity,
        "conditions": [{"displayName": f"{'ratio' if ratio else 'value'} {op} {p.threshold:g}",
                        "conditionThreshold": threshold}],
        "alertStrategy": {"autoClose": "1800s"},
        "notificationChannels": channels,
    }
    if p.documentation:
        body["documentation"] = {"content": p.documentation, "mimeType": "text/markdown"}
    return body


class MonitoringActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    @activity.defn(name=activity_names.ENSURE_ALERT_POLICY)
    async def ensure_alert_policy(self, p: AlertPolicyParams) -> StepOutcome:
        resource = f"projects/{p.project}/alertPolicies[displayName={p.display_name!r}]"
        async with Mutation("ensure alert policy", resource) as m:
            existing = await asyncio.to_thread(find_policy, self.clients, p.project,
                                               p.display_name)
            found = {"alertPolicy": existing["name"] if existing else ABSENT}
            channels: list[str] = []
            if existing is None:
                if p.notification_channel_type:
                    channels = await asyncio.to_thread(
                        notification_channels, self.clients, p.project,
                        p.notification_channel_type)
                m.begin(found)
                body = policy_body(p, channels)
                try:
                    existing = await asyncio.to_thread(lambda: execute(
                        self.clients.discovery("monitoring").projects().alertPolicies().create(
                            name=f"projects/{p.project}", body=body)))
                    m.sent()
                except HttpError as err:
                    # 404: the metric does not exist (A5); 400: the aligner does not fit it
                    # (A4). Both are non-retryable; the message names the metric.
                    metrics = sorted({metric_type(p.metric_filter),
                                      metric_type(p.denominator_filter or p.metric_filter)})
                    raise errors.to_application_error(
                        err, action=f"create alert policy on {', '.join(metrics)} "
                                    f"(aligner {p.aligner})",
                        resource=resource, checkpoint=m.dump()) from err
            before = m.before or found
            created = before.get("alertPolicy") == ABSENT
            after = {"name": existing["name"], "displayName": existing.get("displayName", "")}
            return m.outcome(
                current_before=found, after=after, changed=created,
                detail=(f"created {existing['name']}" + (f" notifying {len(channels)} channel(s)"
                                                          if channels else "")
                        if created else f"exists as {existing['name']}"),
                data={"created": created, "notification_channels": channels})

    @activity.defn(name=activity_names.DELETE_ALERT_POLICY)
    async def delete_alert_policy(self, inp: CompensationInput) -> StepOutcome:
        name = inp.outcome.after.get("name", "")
        async with Mutation("delete alert policy", name or inp.step_id) as m:
            # Only what the forward step created; a pre-existing policy is not ours.
            if not inp.outcome.changed or inp.outcome.before.get("alertPolicy") != ABSENT \
                    or not name:
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{inp.step_id} created no policy; nothing to delete")
            api = self.clients.discovery
            try:
                await asyncio.to_thread(lambda: execute(
                    api("monitoring").projects().alertPolicies().get(name=name)))
            except HttpError as err:
                if err.status_code != 404:
                    raise
                return m.outcome(current_before={"alertPolicy": ABSENT},
                                 after={"alertPolicy": ABSENT}, changed=m.resumed,
                                 detail=f"{name} already deleted")
            m.begin({"alertPolicy": name})
            try:
                await asyncio.to_thread(lambda: execute(
                    api("monitoring").projects().alertPolicies().delete(name=name)))
                m.sent()
            except HttpError as err:
                if err.status_code != 404:
                    raise
            return m.outcome(current_before={"alertPolicy": name},
                             after={"alertPolicy": ABSENT}, changed=True,
                             detail=f"deleted {name} (created by {inp.step_id})")
