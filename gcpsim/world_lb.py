"""The built-in worlds' load-balancer topology, Memorystore instance and DNS.

Two variants share everything but the backend services' backends:

- ``serverless`` (the default, how Cloud Run is really put behind an external HTTPS load
  balancer): each backend service points at a regional serverless NEG for its Cloud Run
  service, with no health checks, no balancing mode and no settable ``timeoutSec``
  (GCP_FIDELITY A1). The health checks still exist as resources, attached to nothing.
- ``instance-group``: the same backend services point at regional instance groups, with a
  health check, UTILIZATION balancing and ``timeoutSec: 30``; there the health checks and
  the backend timeout do affect the app (see :mod:`gcpsim.health_model`).

Names are fixed: other developers code against them.
"""
from __future__ import annotations

from typing import Any

from .compute import LINK, fingerprint
from .context import numeric_id
from .run_model import short

IP = "34.120.10.20"
DNS = {"staging.netrasystems.ai": IP, "api-staging.netrasystems.ai": IP, "legacy.netrasystems.ai": IP}

# A self-signed placeholder (PEM framing only): the simulator never parses certificates.
_PEM = "-----BEGIN CERTIFICATE-----\nMIIBsimulatedlegacycertificate\n-----END CERTIFICATE-----\n"


def redis_instance(project: str, region: str, created: str) -> tuple[str, dict[str, Any]]:
    name = f"projects/{project}/locations/{region}/instances/staging-redis"
    return name, {
        "name": name, "displayName": "staging-redis", "locationId": f"{region}-a",
        "currentLocationId": f"{region}-a", "redisVersion": "REDIS_7_0", "reservedIpRange": "10.30.0.0/29",
        "host": "10.30.0.4", "port": 6379, "createTime": created, "state": "READY", "tier": "BASIC",
        "memorySizeGb": 1, "authorizedNetwork": f"projects/{project}/global/networks/staging-vpc",
        "connectMode": "DIRECT_PEERING", "authEnabled": False, "transitEncryptionMode": "DISABLED",
        "persistenceIamIdentity": "serviceAccount:service-123456789012@cloud-redis.iam.gserviceaccount.com",
        "readReplicasMode": "READ_REPLICAS_DISABLED", "replicaCount": 0, "labels": {"env": "staging"},
    }


def topology(project: str, region: str, created: str, variant: str) -> dict[str, dict[str, Any]]:
    """Compute resources (keyed by name) of the load balancer in front of the two Cloud Run
    services: health checks, backend services, NEGs, URL map, proxy, forwarding rule and
    the legacy self-managed certificate already attached to the proxy."""
    g = f"projects/{project}/global"
    out: dict[str, dict[str, Any]] = {}

    def add(k: str, kind: str, **fields: Any) -> dict[str, Any]:
        res = {"kind": f"compute#{kind}", "id": numeric_id(k), "creationTimestamp": created,
               "name": short(k), "description": "", "selfLink": LINK + k, **fields}
        out[k] = res
        return res

    routes = (("netra-backend-staging", "staging-backend", "/health"), ("auth-staging", "staging-auth", "/auth/health"))
    for service, prefix, path in routes:
        hc = f"{g}/healthChecks/{prefix}-health-check"
        add(hc, "healthCheck", checkIntervalSec=5, timeoutSec=5, unhealthyThreshold=2, healthyThreshold=2,
            type="HTTP", httpHealthCheck={"port": 8080, "requestPath": path, "proxyHeader": "NONE",
                                          "portSpecification": "USE_FIXED_PORT"}, logConfig={"enable": False})
        neg = f"projects/{project}/regions/{region}/networkEndpointGroups/{service}-neg"
        add(neg, "networkEndpointGroup", networkEndpointType="SERVERLESS", cloudRun={"service": service},
            region=f"{LINK}projects/{project}/regions/{region}", size=0)
        bs_key = f"{g}/backendServices/{prefix}-service"
        common = {"protocol": "HTTPS", "loadBalancingScheme": "EXTERNAL_MANAGED",
                  "connectionDraining": {"drainingTimeoutSec": 0}, "sessionAffinity": "NONE",
                  "affinityCookieTtlSec": 0, "enableCDN": False}
        if variant == "serverless":
            # No healthChecks, no balancingMode/capacityScaler (not allowed with serverless
            # NEGs). Choice (unverified): GET reports no timeoutSec for such a backend
            # service; real GCP may show the default 30 while ignoring it (fixed 60 min).
            bs = add(bs_key, "backendService", backends=[{"group": LINK + neg}], **common)
        else:
            ig = f"{LINK}projects/{project}/regions/{region}/instanceGroups/{prefix}-ig"
            bs = add(bs_key, "backendService",
                     backends=[{"group": ig, "balancingMode": "UTILIZATION", "capacityScaler": 1}],
                     healthChecks=[LINK + hc], timeoutSec=30, port=80, portName="http", **common)
        bs["fingerprint"] = fingerprint(bs)

    um = f"{g}/urlMaps/staging-url-map"
    backend_link, auth_link = (f"{LINK}{g}/backendServices/staging-{x}-service" for x in ("backend", "auth"))
    add(um, "urlMap", defaultService=backend_link,
        hostRules=[{"hosts": ["*"], "pathMatcher": "staging-paths"}],
        pathMatchers=[{"name": "staging-paths", "defaultService": backend_link,
                       "pathRules": [{"paths": ["/auth/*"], "service": auth_link}]}])
    um_res = out[um]
    um_res["fingerprint"] = fingerprint(um_res)

    cert = f"{g}/sslCertificates/staging-legacy-cert"
    add(cert, "sslCertificate", type="SELF_MANAGED", certificate=_PEM,
        subjectAlternativeNames=["legacy.netrasystems.ai"], expireTime="2027-03-01T00:00:00.000-08:00")
    proxy = f"{g}/targetHttpsProxies/staging-https-proxy"
    px = add(proxy, "targetHttpsProxy", urlMap=LINK + um, sslCertificates=[LINK + cert], quicOverride="NONE")
    px["fingerprint"] = fingerprint(px)
    rule = f"{g}/forwardingRules/staging-https-rule"
    fr = add(rule, "forwardingRule", IPAddress=IP, IPProtocol="TCP", portRange="443-443",
             loadBalancingScheme="EXTERNAL_MANAGED", target=LINK + proxy, networkTier="PREMIUM",
             labelFingerprint="42WmSpB8rSM=")
    fr["fingerprint"] = fingerprint(fr)
    return out
