"""The approval service's HTTP API, with real tokens from the dev issuer and a sender that
records what it was asked to do; ActionSender itself against a real Temporal test server;
the service's settings."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest
from temporalio.client import WorkflowExecutionStatus

from approval.actions import ActionRefused, ActionRequest, ActionSender, Person
from approval.config import ConfigError, ServiceSettings
from approval.dev_issuer import DevIssuer, dev_issuer_url
from approval.oidc import TokenVerifier
from approval.service import create_app
from runbook.envelope import EnvelopeSigner, EnvelopeVerifier, generate_keypair

SERVICE = "http://approval.test:8095"


class RecordingSender(ActionSender):
    """Records each action and answers like a run would; ``refusal`` makes it refuse."""

    def __init__(self) -> None:
        super().__init__(client=None, signer=None)  # type: ignore[arg-type]
        self.sent: list[tuple[Person, ActionRequest, str]] = []
        self.started: list[tuple[Person, dict, str | None]] = []
        self.refusal: ActionRefused | None = None

    async def send(self, person, req, via):
        self.sent.append((person, req, via))
        if self.refusal:
            raise self.refusal
        return {"gate": req.gate, "accepted": True, "approvals": 1, "required": 1,
                "gate_status": "approved", "identity": person.identity}

    async def start_run(self, person, request, workflow_id=None, via="api"):
        self.started.append((person, request, workflow_id))
        if self.refusal:
            raise self.refusal
        return {"workflow_id": workflow_id or "remediation-1278-abc123", "run_id": "r1",
                "requested_by": person.identity}


@pytest.fixture
def dev():
    return DevIssuer(dev_issuer_url(SERVICE))


@pytest.fixture
def sender():
    return RecordingSender()


@pytest.fixture
async def http(dev, sender, tmp_path):
    settings = ServiceSettings(signing_key_file=tmp_path / "unused.pem", signing_kid="k1",
                               dev_issuer=True, public_url=SERVICE)
    verifier = TokenVerifier([dev.issuer_config()], key_sources={dev.issuer: dev})
    app = create_app(settings, sender, verifier, extra_routers=[dev.router()])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SERVICE) as client:
        yield client


async def login(http: httpx.AsyncClient, user: str) -> dict[str, str]:
    resp = await http.post("/dev-issuer/token", json={"user": user})
    return {"Authorization": f"Bearer {resp.json()['id_token']}"}


async def test_healthz_needs_no_token(http):
    assert (await http.get("/healthz")).json() == {"ok": True}


async def test_whoami_names_the_verified_person(http, dev):
    resp = await http.get("/v1/whoami", headers=await login(http, "Alice@Example.com"))
    assert resp.json() == {"identity": "alice@example.com", "idp": dev.issuer}


@pytest.mark.parametrize("headers, reason", [
    ({}, "missing bearer token"),
    ({"Authorization": "Basic YWxpY2U6cHc="}, "malformed Authorization"),
    ({"Authorization": "Bearer"}, "malformed Authorization"),
    ({"Authorization": "Bearer not-a-jwt"}, "malformed token"),
])
async def test_no_valid_token_is_401_with_a_bearer_challenge(http, sender, headers, reason):
    resp = await http.post("/v1/runs/wf-1/approve", headers=headers,
                           json={"gate": "phase-1", "plan_digest": "d1"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert reason in resp.json()["detail"]
    assert sender.sent == []


async def test_an_expired_token_is_401(http, dev, sender):
    token = dev.issue("alice", ttl_s=60, now=time.time() - 3600)
    resp = await http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "expired" in resp.json()["detail"]


async def test_a_token_of_another_issuer_is_401(http):
    stranger = DevIssuer("https://evil.example/dev-issuer")
    resp = await http.get("/v1/whoami",
                          headers={"Authorization": f"Bearer {stranger.issue('alice')}"})
    assert resp.status_code == 401 and "unknown issuer" in resp.json()["detail"]


async def test_approve_sends_the_verified_identity(http, sender, dev):
    resp = await http.post("/v1/runs/wf-1/approve", headers=await login(http, "Alice"),
                           json={"gate": "phase-1", "plan_digest": "d1", "comment": "ok"})
    assert resp.status_code == 200
    assert resp.json()["identity"] == "alice" and resp.json()["gate_status"] == "approved"
    [(person, req, via)] = sender.sent
    assert person == Person(identity="alice", idp=dev.issuer) and via == "api"
    assert req == ActionRequest(act="approve", workflow_id="wf-1", gate="phase-1",
                                plan_digest="d1", comment="ok")


async def test_the_cli_is_named_as_the_channel(http, sender):
    headers = await login(http, "alice") | {"X-Runbook-Via": "cli"}
    assert (await http.post("/v1/runs/wf-1/pause", headers=headers)).status_code == 200
    [(_, req, via)] = sender.sent
    assert (req.act, req.reason, via) == ("pause", "", "cli")


@pytest.mark.parametrize("path, body, act, fields", [
    ("reject", {"gate": "phase-1", "reason": "no"}, "reject", {"gate": "phase-1", "reason": "no"}),
    ("decide", {"gate": "decide-x", "decision": "skip"}, "decide",
     {"gate": "decide-x", "decision": "skip"}),
    ("abort", {"reason": "wrong target"}, "abort", {"reason": "wrong target"}),
    ("resume", {"reason": "go"}, "resume", {"reason": "go"}),
])
async def test_each_action_reaches_the_sender(http, sender, path, body, act, fields):
    resp = await http.post(f"/v1/runs/wf-2/{path}", headers=await login(http, "bob"), json=body)
    assert resp.status_code == 200
    [(_, req, _)] = sender.sent
    assert req.act == act and req.workflow_id == "wf-2"
    assert {k: getattr(req, k) for k in fields} == fields


@pytest.mark.parametrize("path, body, field", [
    ("approve", {"gate": "phase-1"}, "plan_digest"),
    ("approve", {"gate": "phase-1", "plan_digest": "d", "approver": "carol"}, "approver"),
    ("decide", {"gate": "decide-x", "decision": "maybe"}, "decision"),
    ("reject", {"reason": "no"}, "gate"),
    ("abort", {}, "reason"),
    ("pause", {"reason": 5}, "reason"),
])
async def test_a_bad_body_is_422_naming_the_field(http, sender, path, body, field):
    resp = await http.post(f"/v1/runs/wf-1/{path}", headers=await login(http, "alice"), json=body)
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith(field) or f"{field}:" in resp.json()["detail"]
    assert sender.sent == []


@pytest.mark.parametrize("status", [404, 409])
async def test_a_refusal_passes_through_with_its_reason(http, sender, status):
    sender.refusal = ActionRefused("two-person rule: alice requested this run", status)
    resp = await http.post("/v1/runs/wf-1/approve", headers=await login(http, "alice"),
                           json={"gate": "phase-1", "plan_digest": "d1"})
    assert resp.status_code == status
    assert resp.json() == {"detail": "two-person rule: alice requested this run"}


async def test_start_sets_the_requester_to_the_caller(http, sender):
    resp = await http.post("/v1/runs", headers=await login(http, "Carol"),
                           json={"request": {"incident_id": "42", "requested_by": "carol "},
                                 "workflow_id": "remediation-42-x"})
    assert resp.status_code == 201
    assert resp.json() == {"workflow_id": "remediation-42-x", "run_id": "r1", "requested_by": "carol"}
    [(person, request, wid)] = sender.started
    assert (person.identity, request["requested_by"], request["incident_id"], wid) == \
        ("carol", "carol", "42", "remediation-42-x")
    assert "requester_proof" not in request  # the sender signs it


@pytest.mark.parametrize("request_body, field", [
    ({"requested_by": "mallory"}, "request.requested_by"),
    ({"requester_proof": "eyJ..."}, "request.requester_proof"),
    ({"targets": {"projekt": "p"}}, "request.targets.projekt"),
])
async def test_a_bad_start_request_is_422_naming_the_field(http, sender, request_body, field):
    resp = await http.post("/v1/runs", headers=await login(http, "carol"),
                           json={"request": request_body})
    assert resp.status_code == 422 and resp.json()["detail"].startswith(field)
    assert sender.started == []


async def test_a_bad_workflow_id_is_422(http, sender):
    resp = await http.post("/v1/runs", headers=await login(http, "carol"),
                           json={"request": {}, "workflow_id": "bad id\n"})
    assert resp.status_code == 422 and "workflow_id" in resp.json()["detail"]


# ------------------------------------------------- ActionSender, real Temporal ---------

async def test_sender_refuses_an_unknown_run_with_404(dev_server_env):
    private, _ = generate_keypair()
    sender = ActionSender(dev_server_env.client, EnvelopeSigner.from_pem(private, "k1"))
    with pytest.raises(ActionRefused) as caught:
        await sender.send(Person(identity="alice", idp="https://idp"),
                          ActionRequest(act="abort", workflow_id=f"nope-{uuid.uuid4()}"), "api")
    assert caught.value.status_code == 404 and caught.value.reason.startswith("no run nope-")


async def test_sender_starts_with_a_requester_proof_and_refuses_a_closed_run(dev_server_env,
                                                                            tmp_path):
    # The real dev server, not the shared time-skipping one: a run whose workflow task no
    # worker takes, then terminated, would hold that server's time-skipping lock for every
    # later test of the session.
    private, public = generate_keypair()
    (tmp_path / "keys.json").write_text(json.dumps({"keys": {"k1": public.decode()}}))
    client = dev_server_env.client
    # A queue no worker polls: the run stays unstarted, its input is what the service sent.
    sender = ActionSender(client, EnvelopeSigner.from_pem(private, "k1"),
                          task_queue=f"nobody-{uuid.uuid4()}")
    carol = Person(identity="carol", idp="https://idp.example")
    started = await sender.start_run(carol, {"incident_id": "77"})
    wid = started["workflow_id"]
    assert wid.startswith("remediation-77-") and started["requested_by"] == "carol"
    handle = client.get_workflow_handle(wid)
    history = await handle.fetch_history()
    payload = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    sent = json.loads(payload.data)
    assert sent["requested_by"] == "carol"
    claims = EnvelopeVerifier.from_file(tmp_path / "keys.json").verify(
        sent["requester_proof"], history.events[0].event_time.ToDatetime())
    assert (claims.act, claims.sub, claims.idp, claims.wid, claims.rid) == \
        ("start", "carol", "https://idp.example", wid, None)

    with pytest.raises(ActionRefused) as caught:  # the id is taken while the run is open
        await sender.start_run(carol, {"incident_id": "77"}, workflow_id=wid)
    assert caught.value.status_code == 409

    await handle.terminate(reason="test")
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
    with pytest.raises(ActionRefused) as caught:
        await sender.send(carol, ActionRequest(act="pause", workflow_id=wid), "api")
    assert caught.value.status_code == 409 and "TERMINATED" in caught.value.reason


# ------------------------------------------------------------------- settings ---------

BASE_ENV = {"RUNBOOK_APPROVAL_SIGNING_KEY_FILE": "/keys/sign.pem",
            "RUNBOOK_APPROVAL_SIGNING_KID": "k1", "RUNBOOK_DEV_ISSUER": "1"}


def test_settings_defaults():
    s = ServiceSettings.from_env(BASE_ENV)
    assert (s.host, s.port, s.public_url, s.dev_issuer, s.issuers) == \
        ("127.0.0.1", 8095, "http://127.0.0.1:8095", True, [])
    assert (s.temporal_address, s.temporal_namespace, s.task_queue) == \
        ("localhost:7233", "default", "remediation")


def test_settings_read_issuers_and_slack_paths():
    s = ServiceSettings.from_env(BASE_ENV | {
        "RUNBOOK_DEV_ISSUER": "0", "RUNBOOK_APPROVAL_PORT": "9000",
        "RUNBOOK_OIDC_ISSUERS": json.dumps([{"issuer": "https://accounts.google.com",
                                             "audience": "123.apps.googleusercontent.com",
                                             "allowed_domains": ["example.org"]}]),
        "RUNBOOK_SLACK_SIGNING_SECRET_FILE": "/s/secret", "RUNBOOK_SLACK_USERS_FILE": "/s/users"})
    assert [(i.issuer, i.identity_claim) for i in s.issuers] == \
        [("https://accounts.google.com", "email")]
    assert s.public_url == "http://127.0.0.1:9000"
    assert (str(s.slack_signing_secret_file), str(s.slack_users_file)) == ("/s/secret", "/s/users")


@pytest.mark.parametrize("change, message", [
    ({"RUNBOOK_DEV_ISSUER": ""}, "RUNBOOK_OIDC_ISSUERS: no OIDC issuer"),
    ({"RUNBOOK_OIDC_ISSUERS": "[{"}, "RUNBOOK_OIDC_ISSUERS: not JSON"),
    ({"RUNBOOK_OIDC_ISSUERS": '{"issuer": "x"}'}, "RUNBOOK_OIDC_ISSUERS: must be a JSON list"),
    ({"RUNBOOK_OIDC_ISSUERS": '[{"issuer": "https://a"}]'}, "RUNBOOK_OIDC_ISSUERS[0]: audience"),
    # Google vouches for any account holder: refused without an allowlist.
    ({"RUNBOOK_OIDC_ISSUERS": '[{"issuer": "https://accounts.google.com", "audience": "a"}]'},
     "RUNBOOK_OIDC_ISSUERS[0]: payload: https://accounts.google.com signs tokens for anyone"),
    ({"RUNBOOK_OIDC_ISSUERS": '[{"issuer": "http://idp.example", "audience": "a"}]'},
     "RUNBOOK_OIDC_ISSUERS[0].issuer: must be an https URL"),
    ({"RUNBOOK_APPROVAL_SIGNING_KEY_FILE": ""}, "RUNBOOK_APPROVAL_SIGNING_KEY_FILE: not set"),
    ({"RUNBOOK_APPROVAL_SIGNING_KID": ""}, "RUNBOOK_APPROVAL_SIGNING_KID: must be set"),
    ({"RUNBOOK_APPROVAL_PORT": "http"}, "RUNBOOK_APPROVAL_PORT: must be a port"),
    ({"RUNBOOK_DEV_ISSUER": "maybe"}, "RUNBOOK_DEV_ISSUER: must be 1 or 0"),
    ({"RUNBOOK_APPROVAL_PUBLIC_URL": "approval:8095"}, "RUNBOOK_APPROVAL_PUBLIC_URL: must be"),
])
def test_bad_settings_name_the_variable(change, message):
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env(BASE_ENV | change)
    assert str(caught.value).startswith(message)


def test_an_unreadable_or_wrong_signing_key_names_the_variable(tmp_path):
    settings = ServiceSettings.from_env(BASE_ENV | {
        "RUNBOOK_APPROVAL_SIGNING_KEY_FILE": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError, match="RUNBOOK_APPROVAL_SIGNING_KEY_FILE .*cannot read"):
        settings.load_signer()
    (tmp_path / "public.pem").write_bytes(generate_keypair()[1])
    settings = ServiceSettings.from_env(BASE_ENV | {
        "RUNBOOK_APPROVAL_SIGNING_KEY_FILE": str(tmp_path / "public.pem")})
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        settings.load_signer()


def test_settings_reach_temporal_cloud_and_keep_the_api_key_out_of_the_repr(tmp_path):
    key = "tmprl-approval-secret-key-0987654321"
    s = ServiceSettings.from_env(BASE_ENV | {
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profile.toml"),
        "TEMPORAL_ADDRESS": "team.a1b2c.tmprl.cloud:7233", "TEMPORAL_NAMESPACE": "team.a1b2c",
        "TEMPORAL_API_KEY": key})
    assert s.temporal_connect_options() == {
        "target_host": "team.a1b2c.tmprl.cloud:7233", "namespace": "team.a1b2c",
        "api_key": key, "tls": True}
    assert key not in repr(s)
    plain = ServiceSettings.from_env(BASE_ENV | {"TEMPORAL_CONFIG_FILE": str(tmp_path / "none")})
    assert plain.temporal_connect_options() == {"target_host": "localhost:7233",
                                                "namespace": "default"}


def test_bad_temporal_connection_settings_name_the_variables(tmp_path):
    (tmp_path / "c.pem").write_text("cert")
    with pytest.raises(ConfigError) as caught:
        ServiceSettings.from_env(BASE_ENV | {
            "TEMPORAL_CONFIG_FILE": str(tmp_path / "no-profile.toml"),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "c.pem"),
            "TEMPORAL_TLS_CLIENT_CERT_DATA": "inline"})
    assert "TEMPORAL_TLS_CLIENT_CERT_PATH" in str(caught.value)
    assert "TEMPORAL_TLS_CLIENT_CERT_DATA" in str(caught.value)
