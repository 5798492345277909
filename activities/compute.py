"""Compute Engine v1 (load balancer pieces): health checks, backend services, certificate.

A managed certificate provisions only once a load balancer serves it (GCP_FIDELITY A3),
so ``ensure_certificate`` also attaches it to the target HTTPS proxy, beside the
certificates already there. Every mutation carries a ``requestId`` derived from the run,
the activity and the target (see ``mutation.request_id``), so a retried attempt
re-sending the same change is deduplicated by the API. Global operations are polled
with ``globalOperations.get``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from googleapiclient.errors import HttpError
from temporalio import activity

from activities import errors
from activities.clients import GcpClients, execute, get_or_none
from activities.load_balancing import (
    BACKEND_TIMEOUT_DEFAULT,
    read_topology,
    ref_key,
    set_proxy_certificates,
)
from activities.mutation import Mutation
from activities.operations import Operations, PollTimeout, poll
from runbook import activity_names
from runbook.activity_io import (
    BackendServiceTimeoutParams,
    CertificateParams,
    CompensationInput,
    HealthCheckParams,
    StepOutcome,
)

# API defaults when a field is absent (compute.v1 discovery document).
HC_DEFAULTS = {"checkIntervalSec": 5, "timeoutSec": 5, "healthyThreshold": 2,
               "unhealthyThreshold": 2}
# Managed certificate statuses that may still turn ACTIVE.
_STILL_PROVISIONING = ("PROVISIONING", "PROVISIONING_FAILED", None)
# What a domainStatus says about the cause (compute.v1 discovery, SslCertificate).
_DOMAIN_HINTS = {"FAILED_NOT_VISIBLE": "DNS does not point at the load balancer's IP",
                 "FAILED_CAA_CHECKING": "the CAA record could not be checked",
                 "FAILED_CAA_FORBIDDEN": "a CAA record forbids Google's CA",
                 "FAILED_RATE_LIMITED": "the CA's rate limit was hit"}


def hc_resource(project: str, name: str) -> str:
    return f"projects/{project}/global/healthChecks/{name}"


def bs_resource(project: str, name: str) -> str:
    return f"projects/{project}/global/backendServices/{name}"


def cert_resource(project: str, name: str) -> str:
    return f"projects/{project}/global/sslCertificates/{name}"


def hc_record(hc: dict[str, Any]) -> dict[str, int]:
    return {k: int(hc.get(k, d)) for k, d in HC_DEFAULTS.items()}


def hc_patch_body(current: dict[str, int], target: dict[str, int]) -> dict[str, int]:
    """The PATCH body, ordered so that each field applied in turn keeps
    timeoutSec <= checkIntervalSec: a growing interval goes first, a shrinking one last."""
    if target["checkIntervalSec"] >= current["checkIntervalSec"]:
        order = ("checkIntervalSec", "timeoutSec", "healthyThreshold", "unhealthyThreshold")
    else:
        order = ("timeoutSec", "checkIntervalSec", "healthyThreshold", "unhealthyThreshold")
    return {k: target[k] for k in order}


def cert_record(cert: dict[str, Any] | None) -> dict[str, Any]:
    if cert is None:
        return {"exists": False}
    managed = cert.get("managed", {})
    return {"exists": True, "status": managed.get("status", ""),
            "domains": list(managed.get("domains", [])), "type": cert.get("type", ""),
            "domain_status": dict(managed.get("domainStatus", {}))}


def domain_problems(cert: dict[str, Any] | None, ips: list[str]) -> str:
    """Each domain's status, with what a failure means."""
    statuses = (cert or {}).get("managed", {}).get("domainStatus", {})
    if not statuses:
        return "no domain status yet"
    out = []
    for domain, status in sorted(statuses.items()):
        hint = _DOMAIN_HINTS.get(status, "")
        if status == "FAILED_NOT_VISIBLE" and ips:
            hint = f"DNS does not point at the load balancer's IP {', '.join(ips)}"
        out.append(f"{domain}: {status}" + (f" ({hint})" if hint else ""))
    return "; ".join(out)


def attached_by_step(before: dict[str, Any], cert: str) -> bool:
    """Whether the step attached ``cert`` (its proxy's list, recorded before, lacked it)."""
    return bool(before.get("target_https_proxy")) and cert not in {
        ref_key(x) for x in before.get("proxy_certificates", [])}


class ComputeActivities:
    def __init__(self, clients: GcpClients) -> None:
        self.clients = clients
        self.ops = Operations(clients)

    def _api(self) -> Any:
        return self.clients.discovery("compute")

    # -- health checks ------------------------------------------------------------------

    def _get_hc(self, project: str, name: str) -> dict[str, Any]:
        return execute(self._api().healthChecks().get(project=project, healthCheck=name))

    async def _set_hc(self, m: Mutation, project: str, name: str,
                      target: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        if m.pending_operation:
            await self.ops.resume(m, lambda op: self.ops.compute_global(project, op, m))
        found = hc_record(await asyncio.to_thread(self._get_hc, project, name))
        if found != target:
            m.begin(found)
            body = hc_patch_body(found, target)
            rid = m.request_id(sorted(target.items()))
            op = await asyncio.to_thread(lambda: execute(self._api().healthChecks().patch(
                project=project, healthCheck=name, body=body, requestId=rid)))
            m.operation_started(op["name"])
            await self.ops.compute_global(project, op["name"], m)
        after = hc_record(await asyncio.to_thread(self._get_hc, project, name))
        return found, after

    @activity.defn(name=activity_names.CONFIGURE_HEALTH_CHECK)
    async def configure_health_check(self, p: HealthCheckParams) -> StepOutcome:
        resource = hc_resource(p.project, p.health_check)
        target = {"checkIntervalSec": p.check_interval_s, "timeoutSec": p.timeout_s,
                  "healthyThreshold": p.healthy_threshold,
                  "unhealthyThreshold": p.unhealthy_threshold}
        async with Mutation("configure health check", resource) as m:
            found, after = await self._set_hc(m, p.project, p.health_check, target)
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{resource}: {m.before or found} -> {after}")

    @activity.defn(name=activity_names.RESTORE_HEALTH_CHECK)
    async def restore_health_check(self, inp: CompensationInput) -> StepOutcome:
        p = inp.params
        resource = hc_resource(p["project"], p["health_check"])
        async with Mutation("restore health check", resource) as m:
            if not inp.outcome.changed or not inp.outcome.before:
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{inp.step_id} changed nothing; nothing to restore")
            target = hc_record(inp.outcome.before)
            found, after = await self._set_hc(m, p["project"], p["health_check"], target)
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{resource}: restored {after}")

    # -- backend services ---------------------------------------------------------------

    def _get_bs(self, project: str, name: str) -> dict[str, Any]:
        return execute(self._api().backendServices().get(project=project, backendService=name))

    def _patch_bs(self, project: str, name: str, timeout_s: int, fingerprint: str,
                  rid: str) -> dict[str, Any]:
        return execute(self._api().backendServices().patch(
            project=project, backendService=name,
            body={"timeoutSec": timeout_s, "fingerprint": fingerprint}, requestId=rid))

    async def _set_bs_timeout(self, m: Mutation, project: str, name: str,
                              timeout_s: int) -> tuple[dict[str, int], dict[str, int]]:
        if m.pending_operation:
            await self.ops.resume(m, lambda op: self.ops.compute_global(project, op, m))
        bs = await asyncio.to_thread(self._get_bs, project, name)
        found = {"timeoutSec": int(bs.get("timeoutSec", BACKEND_TIMEOUT_DEFAULT))}
        if found["timeoutSec"] != timeout_s:
            m.begin(found)
            # The fingerprint of this attempt's GET is required. A concurrent change makes it
            # stale: 412 maps to the retryable StaleFingerprint, and Temporal's next attempt
            # reads again (one retry policy, not a loop of our own here).
            fp = bs.get("fingerprint", "")
            rid = m.request_id(timeout_s, fp)
            op = await asyncio.to_thread(self._patch_bs, project, name, timeout_s, fp, rid)
            m.operation_started(op["name"])
            await self.ops.compute_global(project, op["name"], m)
        bs = await asyncio.to_thread(self._get_bs, project, name)
        return found, {"timeoutSec": int(bs.get("timeoutSec", BACKEND_TIMEOUT_DEFAULT))}

    @activity.defn(name=activity_names.SET_BACKEND_SERVICE_TIMEOUT)
    async def set_backend_service_timeout(self, p: BackendServiceTimeoutParams) -> StepOutcome:
        resource = bs_resource(p.project, p.backend_service)
        async with Mutation("set backend service timeout", resource) as m:
            found, after = await self._set_bs_timeout(m, p.project, p.backend_service, p.timeout_s)
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{resource}: timeoutSec {(m.before or found)['timeoutSec']} "
                                    f"-> {after['timeoutSec']}")

    @activity.defn(name=activity_names.RESTORE_BACKEND_SERVICE)
    async def restore_backend_service(self, inp: CompensationInput) -> StepOutcome:
        p = inp.params
        resource = bs_resource(p["project"], p["backend_service"])
        async with Mutation("restore backend service", resource) as m:
            if not inp.outcome.changed or "timeoutSec" not in inp.outcome.before:
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{inp.step_id} changed nothing; nothing to restore")
            found, after = await self._set_bs_timeout(
                m, p["project"], p["backend_service"], int(inp.outcome.before["timeoutSec"]))
            return m.outcome(current_before=found, after=after, changed=m.checkpoint is not None,
                             detail=f"{resource}: restored timeoutSec {after['timeoutSec']}")

    # -- managed certificate ------------------------------------------------------------

    def _get_cert(self, project: str, name: str) -> dict[str, Any] | None:
        return get_or_none(self._api().sslCertificates().get(project=project, sslCertificate=name))

    async def _insert_cert(self, m: Mutation, p: CertificateParams) -> dict[str, Any]:
        body = {"name": p.certificate, "type": "MANAGED",
                "managed": {"domains": list(p.domains)}}
        rid = m.request_id(sorted(p.domains))
        try:
            op = await asyncio.to_thread(lambda: execute(
                self._api().sslCertificates().insert(project=p.project, body=body,
                                                     requestId=rid)))
        except HttpError as err:
            if err.status_code != 409:
                raise
            op = None  # created meanwhile (by an earlier attempt of this step)
        if op is not None:
            m.operation_started(op["name"])
            await self.ops.compute_global(p.project, op["name"], m)
        cert = await asyncio.to_thread(self._get_cert, p.project, p.certificate)
        if cert is None:
            raise errors.app_error(f"ensure certificate {m.resource}: not found after its "
                                   "insert finished", errors.OPERATION_FAILED,
                                   non_retryable=False)
        return cert

    async def _set_proxy_certs(self, m: Mutation, project: str, proxy: str,
                               links: list[str], what: str) -> None:
        rid = m.request_id(what, proxy, sorted(ref_key(x) for x in links))
        op = await asyncio.to_thread(set_proxy_certificates, self.clients, project, proxy,
                                     links, rid)
        m.operation_started(op["name"])
        await self.ops.compute_global(project, op["name"], m)

    def _proxy_links(self, project: str, proxy: str) -> list[str]:
        # A missing proxy is a 404: the error map makes it a non-retryable NotFound.
        found = execute(self._api().targetHttpsProxies().get(project=project,
                                                            targetHttpsProxy=proxy))
        return list(found.get("sslCertificates", []))

    @activity.defn(name=activity_names.ENSURE_CERTIFICATE)
    async def ensure_certificate(self, p: CertificateParams) -> StepOutcome:
        resource = cert_resource(p.project, p.certificate)
        proxy = p.target_https_proxy
        async with Mutation("ensure certificate", resource) as m:
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.compute_global(p.project, op, m))
            cert = await asyncio.to_thread(self._get_cert, p.project, p.certificate)
            # ``before``: whether the certificate existed, and the proxy's certificate list
            # (what delete_certificate restores). One checkpoint covers both mutations, so
            # a retried attempt keeps the first attempt's view.
            found = cert_record(cert)
            links: list[str] = []
            if proxy:
                links = await asyncio.to_thread(self._proxy_links, p.project, proxy)
                found |= {"target_https_proxy": proxy, "proxy_certificates": links}
            if cert is None:
                m.begin(found)
                cert = await self._insert_cert(m, p)
            have = sorted(cert.get("managed", {}).get("domains", []))
            if have != sorted(p.domains):
                raise errors.app_error(
                    f"ensure certificate {resource}: exists for {have}, requested "
                    f"{sorted(p.domains)}; a managed certificate's domains cannot be changed",
                    errors.FAILED_PRECONDITION, non_retryable=True)
            own = ref_key(cert.get("selfLink", "")) or resource
            if proxy and own not in {ref_key(x) for x in links}:
                m.begin(found)
                # Appended: the certificates already served keep serving their clients.
                await self._set_proxy_certs(m, p.project, proxy,
                                            [*links, cert.get("selfLink") or resource],
                                            "attach")
                links = await asyncio.to_thread(self._proxy_links, p.project, proxy)
            try:
                cert = await poll(
                    lambda: self._get_cert(p.project, p.certificate) or {},
                    # PROVISIONING_FAILED can be transient (Google: "recheck the status"):
                    # only ACTIVE or a permanent failure ends the wait early (A3).
                    lambda c: c.get("managed", {}).get("status") not in _STILL_PROVISIONING,
                    interval_s=self.ops.interval_s, heartbeat=m.heartbeat,
                    what=f"certificate {resource} ACTIVE", timeout_s=p.wait_active_s)
            except PollTimeout as timeout:
                ips = (await asyncio.to_thread(read_topology, self.clients, p.project, proxy)
                       )[1].ip_addresses if proxy else []
                status = cert_record(timeout.last or None)
                raise errors.step_failed(
                    f"ensure certificate {resource}: still {status.get('status')} after "
                    f"{p.wait_active_s}s" + ("" if proxy else " (attached to no proxy: a "
                                              "managed certificate provisions only once a "
                                              "load balancer serves it)")
                    + f"; {domain_problems(timeout.last, ips)}") from None
            status = cert.get("managed", {}).get("status", "")
            if status != "ACTIVE":
                raise errors.step_failed(
                    f"ensure certificate {resource}: {status or 'missing'}; "
                    f"{domain_problems(cert, [])}")
            after = cert_record(cert)
            if proxy:
                after |= {"target_https_proxy": proxy, "proxy_certificates": links}
            before = m.before or found
            return m.outcome(current_before=found, after=after,
                             changed=m.checkpoint is not None,
                             detail=f"{resource}: ACTIVE for {', '.join(after['domains'])}"
                                    + (f", served by {proxy}" if proxy else ""),
                             data={"created": not before.get("exists", True),
                                   "attached": attached_by_step(before, own)})

    @activity.defn(name=activity_names.DELETE_CERTIFICATE)
    async def delete_certificate(self, inp: CompensationInput) -> StepOutcome:
        p = inp.params
        resource = cert_resource(p["project"], p["certificate"])
        before = inp.outcome.before
        created = not before.get("exists", True)
        proxy = before.get("target_https_proxy")
        async with Mutation("delete certificate", resource) as m:
            # Only what the forward step did is undone: a certificate that existed before
            # the run belongs to someone else, and so does one already on the proxy.
            attached = attached_by_step(before, resource)
            if not inp.outcome.changed or not (created or attached):
                return m.outcome(current_before={}, after={}, changed=False,
                                 detail=f"{resource} existed before {inp.step_id}; kept")
            if m.pending_operation:
                await self.ops.resume(m, lambda op: self.ops.compute_global(p["project"], op, m))
            cert = await asyncio.to_thread(self._get_cert, p["project"], p["certificate"])
            found = cert_record(cert)
            done = []
            if attached:
                links = await asyncio.to_thread(self._proxy_links, p["project"], proxy)
                found |= {"target_https_proxy": proxy, "proxy_certificates": links}
                # Detach first: a certificate a proxy still serves cannot be deleted.
                keep = [x for x in links if ref_key(x) != resource]
                if keep != links:
                    if not keep:
                        raise errors.app_error(
                            f"delete certificate {resource}: it is the only certificate on "
                            f"{proxy}; a target HTTPS proxy needs at least one",
                            errors.FAILED_PRECONDITION, non_retryable=True)
                    m.begin(found)
                    await self._set_proxy_certs(m, p["project"], proxy, keep, "detach")
                    done.append(f"detached from {proxy}")
            if created and cert is not None:
                m.begin(found)
                rid = m.request_id("delete")
                try:
                    op = await asyncio.to_thread(lambda: execute(
                        self._api().sslCertificates().delete(
                            project=p["project"], sslCertificate=p["certificate"],
                            requestId=rid)))
                except HttpError as err:
                    if err.status_code != 404:
                        raise
                    op = None
                if op is not None:
                    m.operation_started(op["name"])
                    await self.ops.compute_global(p["project"], op["name"], m)
                done.append(f"deleted (created by {inp.step_id})")
            after = cert_record(await asyncio.to_thread(self._get_cert, p["project"],
                                                        p["certificate"]))
            if attached:
                after |= {"target_https_proxy": proxy, "proxy_certificates": await
                          asyncio.to_thread(self._proxy_links, p["project"], proxy)}
            return m.outcome(current_before=found, after=after,
                             changed=m.checkpoint is not None,
                             detail=f"{resource}: {'; '.join(done) or 'already undone'}")
