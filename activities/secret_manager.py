"""Secret Manager: check that required secrets exist with an ENABLED latest version.

Metadata only: ``secrets.get`` and ``versions.get(.../versions/latest)``. The ``:access``
method returns the payload and is never called here. (Only notification channels
configured with a ``*_secret`` read a payload, in activities/notify_channel.py, and never
return or log it.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from googleapiclient.errors import HttpError
from temporalio import activity

from activities import errors
from activities.clients import GcpClients, execute
from activities.mutation import guarded, read_outcome
from runbook import activity_names
from runbook.activity_io import CheckSecretsParams, SecretState, StepOutcome


def read_secret_state(clients: GcpClients, project: str, secret: str) -> SecretState:
    api = clients.discovery("secretmanager").projects().secrets()
    name = f"projects/{project}/secrets/{secret}"
    try:
        execute(api.get(name=name))
    except HttpError as err:
        if err.status_code == 404:
            return SecretState(name=secret, exists=False)
        raise
    try:
        # ``latest`` is the most recently created version whatever its state, which is
        # exactly what a Cloud Run ``version: latest`` reference resolves to.
        version = execute(api.versions().get(name=f"{name}/versions/latest"))
    except HttpError as err:
        if err.status_code == 404:
            return SecretState(name=secret, exists=True, latest_state="")  # no versions
        raise
    return SecretState(name=secret, exists=True, latest_state=str(version.get("state", "")))


async def read_secret_states(clients: GcpClients, project: str,
                             secrets: list[str]) -> list[SecretState]:
    async def one(secret: str) -> SecretState:
        return await guarded("check secret", f"projects/{project}/secrets/{secret}",
                             asyncio.to_thread(read_secret_state, clients, project, secret))

    return list(await asyncio.gather(*(one(s) for s in secrets)))


def problem_of(s: SecretState) -> str | None:
    if not s.exists:
        return "missing"
    if not s.latest_state:
        return "no versions"
    if s.latest_state != "ENABLED":
        return f"latest version {s.latest_state}"
    return None


class SecretManagerActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients

    @activity.defn(name=activity_names.CHECK_SECRETS)
    async def check_secrets(self, p: CheckSecretsParams) -> StepOutcome:
        states = await read_secret_states(self.clients, p.project, p.secrets)
        data: dict[str, Any] = {"secrets": [s.model_dump() for s in states]}
        bad = [(s.name, problem_of(s)) for s in states if problem_of(s)]
        if bad:
            listing = ", ".join(f"{name} ({why})" for name, why in bad)
            raise errors.step_failed(
                f"{len(bad)} of {len(states)} required secrets in project {p.project} are not "
                f"usable: {listing}", data)
        return read_outcome(f"projects/{p.project}/secrets",
                            detail=f"all {len(states)} required secrets exist with an ENABLED "
                                   "latest version", data=data)
