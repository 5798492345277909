"""Memorystore for Redis v1: read an instance, and check the services can reach it.

Cloud Run reaches a Redis instance's private IP only through its VPC connector, and only
if that connector sits on the network the instance is authorized on (seed 000 "Validate
Redis/Cloud SQL connectivity", GCP_FIDELITY B1). Read-only: no checkpoint.
"""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio import activity

from activities import errors
from activities.clients import GcpClients, get_or_none, or_none_on_404, short
from activities.run_service import read_service, service_name
from activities.run_template import config_view
from activities.mutation import guarded, read_outcome
from activities.vpc_access import connector_name, connector_network, read_connector
from runbook import activity_names
from runbook.activity_io import CheckRedisParams, RedisState, StepOutcome


def redis_name(project: str, region: str, instance: str) -> str:
    return f"projects/{project}/locations/{region}/instances/{instance}"


def read_redis(clients: GcpClients, project: str, region: str, instance: str) -> RedisState:
    """The instance's state; ``exists=False`` on 404."""
    api = clients.discovery("redis")
    inst = get_or_none(api.projects().locations().instances().get(
        name=redis_name(project, region, instance)))
    if inst is None:
        return RedisState(name=instance, exists=False)
    return RedisState(name=instance, exists=True, state=str(inst.get("state", "")),
                      host=str(inst.get("host", "")), port=int(inst.get("port") or 0),
                      authorized_network=short(str(inst.get("authorizedNetwork", ""))))


def _service_connector(clients: GcpClients, name: str) -> str | None:
    """Short name of a service's template connector ("" for none); None if no service."""
    svc = or_none_on_404(read_service, clients, name)
    return None if svc is None else config_view(svc.get("template", {}))["vpc_connector"]


class MemorystoreActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    def _connector(self, p: CheckRedisParams) -> dict[str, Any]:
        conn = read_connector(self.clients, connector_name(p.project, p.region, p.connector))
        conn["network"] = connector_network(self.clients, p.project, p.region, conn)
        return conn

    @activity.defn(name=activity_names.CHECK_REDIS)
    async def check_redis(self, p: CheckRedisParams) -> StepOutcome:
        name = redis_name(p.project, p.region, p.instance)
        conn_name = connector_name(p.project, p.region, p.connector)
        redis, conn, *connectors = await asyncio.gather(
            guarded("check redis", name, asyncio.to_thread(
                read_redis, self.clients, p.project, p.region, p.instance)),
            guarded("check redis", conn_name, asyncio.to_thread(self._connector, p)),
            *(guarded("check redis", service_name(p.project, p.region, s), asyncio.to_thread(
                _service_connector, self.clients, service_name(p.project, p.region, s)))
              for s in p.services),
        )
        figures: dict[str, Any] = {
            "instance": name, "exists": redis.exists, "state": redis.state,
            "host": redis.host, "port": redis.port,
            "authorized_network": redis.authorized_network,
            "connector": p.connector, "connector_state": conn["state"],
            "connector_network": conn["network"],
            "services": dict(zip(p.services, connectors)),
        }
        problems = []
        if not redis.exists:
            problems.append(f"Memorystore instance {name} does not exist")
        elif redis.state != "READY":
            problems.append(f"Memorystore instance {name} is {redis.state}, not READY")
        if redis.exists and redis.authorized_network != conn["network"]:
            problems.append(f"{name} is authorized on network "
                            f"{redis.authorized_network or '(none)'} but connector "
                            f"{p.connector} is on {conn['network'] or '(unknown)'}")
        if conn["state"] != "READY":
            problems.append(f"connector {conn_name} is {conn['state']}, not READY")
        for service, connector in zip(p.services, connectors):
            if connector is None:
                problems.append(f"service {service} does not exist")
            elif connector != p.connector:
                problems.append(f"service {service} reaches the VPC through "
                                f"{connector or 'no connector'}, not {p.connector}")
        if problems:
            raise errors.step_failed("Redis not reachable: " + "; ".join(problems), figures)
        return read_outcome(
            name, data=figures,
            detail=(f"{p.instance} READY at {redis.host}:{redis.port} on {conn['network']}, "
                    f"reached by {', '.join(p.services) or 'no service'} through {p.connector}"))
