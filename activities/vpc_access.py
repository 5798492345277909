"""Serverless VPC Access: scale the connector (irreversible: connectors only grow)."""

from __future__ import annotations

import asyncio
from typing import Any

from google.cloud import vpcaccess_v1
from temporalio import activity

from activities import errors
from activities.clients import GAPIC_TIMEOUT_S, GcpClients, execute, short
from activities.mutation import Mutation
from activities.operations import Operations, poll
from runbook import activity_names
from runbook.activity_io import ScaleConnectorParams, StepOutcome

_SIZE_FIELDS = ("machineType", "minInstances", "maxInstances")


def connector_name(project: str, region: str, connector: str) -> str:
    return f"projects/{project}/locations/{region}/connectors/{connector}"


def read_connector(clients: GcpClients, name: str) -> dict[str, Any]:
    """The connector as a plain dict (GAPIC read; the GAPIC client has no update)."""
    c = clients.vpc_access().get_connector(name=name, retry=None, timeout=GAPIC_TIMEOUT_S)
    return {
        "name": c.name,
        "state": vpcaccess_v1.Connector.State(c.state).name,
        "machineType": c.machine_type,
        "minInstances": c.min_instances,
        "maxInstances": c.max_instances,
        # The VPC network it reaches (short name); empty for a connector created on a
        # subnet, whose network is the subnet's (see ``connector_network``).
        "network": c.network,
        "subnet": {"name": c.subnet.name, "projectId": c.subnet.project_id} if c.subnet.name
        else {},
    }


def connector_network(clients: GcpClients, project: str, region: str,
                      connector: dict[str, Any]) -> str:
    """Short name of the VPC network a connector (as ``read_connector`` returns it) sits
    on: its ``network``, or else the network of the subnet it was created on."""
    if connector.get("network"):
        return short(str(connector["network"]))
    subnet = connector.get("subnet") or {}
    if not subnet.get("name"):
        return ""
    sub = execute(clients.discovery("compute").subnetworks().get(
        project=subnet.get("projectId") or project, region=region,
        subnetwork=subnet["name"]))
    return short(str(sub.get("network", "")))


def _size(connector: dict[str, Any]) -> dict[str, Any]:
    return {k: connector[k] for k in _SIZE_FIELDS}


class VpcAccessActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self.ops = Operations(clients)

    def _patch(self, name: str, desired: dict[str, Any]) -> dict[str, Any]:
        # The GAPIC client has no UpdateConnector; the discovery client does (GCP_FACTS §2).
        # The API itself refuses shrinking or out-of-range sizes (400, mapped to
        # InvalidArgument naming the field), so no second copy of those rules lives here.
        api = self.clients.discovery("vpcaccess")
        return execute(api.projects().locations().connectors().patch(
            name=name, updateMask=",".join(_SIZE_FIELDS), body=dict(desired)))

    @activity.defn(name=activity_names.SCALE_CONNECTOR)
    async def scale_connector(self, p: ScaleConnectorParams) -> StepOutcome:
        name = connector_name(p.project, p.region, p.connector)
        desired = {"machineType": p.machine_type, "minInstances": p.min_instances,
                   "maxInstances": p.max_instances}
        async with Mutation("scale connector", name) as m:
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.vpcaccess(op, m))
            current = await asyncio.to_thread(read_connector, self.clients, name)
            found = _size(current)
            if found != desired:
                m.begin(found)
                op = await asyncio.to_thread(self._patch, name, desired)
                m.operation_started(op["name"])
                await self.ops.vpcaccess(op["name"], m)
            # The operation may end before the connector reports READY again.
            current = await poll(
                lambda: read_connector(self.clients, name),
                lambda c: c["state"] not in ("UPDATING", "CREATING"),
                interval_s=self.ops.interval_s, heartbeat=m.heartbeat,
                what=f"connector {name} READY")
            if current["state"] != "READY":
                raise errors.app_error(
                    f"scale connector {name}: connector is {current['state']} after the update",
                    errors.OPERATION_FAILED, non_retryable=True)
            after = _size(current)
            if after != desired:
                raise errors.app_error(
                    f"scale connector {name}: operation finished but the connector is {after}, "
                    f"not {desired}", errors.OPERATION_FAILED, non_retryable=False)
            return m.outcome(current_before=found, after=after,
                             detail=f"{name}: {m.before or found} -> {after}",
                             data={"state": current["state"]})
