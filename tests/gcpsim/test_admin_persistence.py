"""The /_sim/ admin API, custom worlds, and persistence across a process restart."""
from __future__ import annotations

from gcpsim_helpers import CONNECTOR, PROJECT, SPEED, add_fault, advance, discovery, gapic_options, mutations, raw
from google.cloud import vpcaccess_v1

from gcpsim.launcher import start_simulator


def test_admin_basics_and_custom_world(sim):
    assert sim.admin("GET", "/_sim/healthz") == {"ok": True}
    state = sim.admin("GET", "/_sim/state")
    assert {"projects", "app", "run", "vpcaccess", "sqladmin", "compute", "secretmanager", "monitoring"} <= set(state)
    assert CONNECTOR in state["vpcaccess"]
    assert f"projects/{PROJECT}/global/sslCertificates/staging-netrasystems-ai-cert" not in state["compute"]
    t0 = sim.admin("GET", "/_sim/clock")["epoch_seconds"]
    assert advance(sim, 3600)["epoch_seconds"] >= t0 + 3600
    assert raw(sim, "POST", "/_sim/clock/advance", {"seconds": -1})[0] == 400

    state["vpcaccess"][CONNECTOR] |= {"machineType": "e2-standard-4", "maxInstances": 10}
    assert sim.admin("POST", "/_sim/reset", state)["world"] == "custom"
    client = vpcaccess_v1.VpcAccessServiceClient(**gapic_options(sim))
    assert client.get_connector(name=CONNECTOR).max_instances == 10
    assert sim.admin("GET", "/_sim/app")["connector"]["overflow_share"] == 0
    sim.admin("POST", "/_sim/reset")
    assert client.get_connector(name=CONNECTOR).max_instances == 3


def test_state_survives_restart(tmp_path):
    with start_simulator(data_dir=tmp_path, speed=SPEED) as first:
        compute = discovery(first, "compute", "v1")
        compute.healthChecks().patch(project=PROJECT, healthCheck="staging-auth-health-check",
                                     body={"checkIntervalSec": 30, "timeoutSec": 30}).execute()
        sql = discovery(first, "sqladmin", "v1")
        op = sql.instances().patch(project=PROJECT, instance="netra-staging-db",
                                   body={"settings": {"tier": "db-custom-2-7680"}}).execute()
        add_fault(first, kind="app_503", count=5)
        clock_before = first.admin("GET", "/_sim/clock")["epoch_seconds"]
        seq_before = mutations(first)[-1]["seq"]
    with start_simulator(data_dir=tmp_path, speed=SPEED) as second:
        assert second.admin("GET", "/_sim/clock")["epoch_seconds"] >= clock_before
        compute = discovery(second, "compute", "v1")
        hc = compute.healthChecks().get(project=PROJECT, healthCheck="staging-auth-health-check").execute()
        assert (hc["checkIntervalSec"], hc["timeoutSec"]) == (30, 30)
        assert [f["kind"] for f in second.admin("GET", "/_sim/faults")["faults"]] == ["app_503"]
        # The log kept every entry; only the SQL operation may have completed meanwhile (its
        # 300 simulated seconds can pass while the second process starts on a loaded machine).
        assert [m["api"] for m in mutations(second, since=seq_before)] in ([], ["sqladmin"])
        advance(second, 310)  # the operation started before the restart completes now, once
        sql = discovery(second, "sqladmin", "v1")
        assert sql.operations().get(project=PROJECT, operation=op["name"]).execute()["status"] == "DONE"
        assert sql.instances().get(project=PROJECT, instance="netra-staging-db").execute()["settings"]["tier"] == \
            "db-custom-2-7680"
        assert [m["api"] for m in mutations(second, since=seq_before)] == ["sqladmin"]


def test_error_diffusion_continues_across_a_restart(tmp_path):
    # At the default world's 57.46% the accumulator runs 200, 503, 200, 503, ...
    with start_simulator(data_dir=tmp_path, speed=SPEED) as first:
        assert [raw(first, "GET", "/health")[0] for _ in range(3)] == [200, 503, 200]
    with start_simulator(data_dir=tmp_path, speed=SPEED) as second:
        assert raw(second, "GET", "/health")[0] == 503  # a fresh accumulator would answer 200
        second.admin("POST", "/_sim/reset")
        assert raw(second, "GET", "/health")[0] == 200  # a reset starts the sequence afresh
