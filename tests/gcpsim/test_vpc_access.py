"""Serverless VPC Access through vpcaccess_v1 (gapic REST) and the discovery client (patch)."""
from __future__ import annotations

import pytest
from gcpsim_helpers import CONNECTOR, LOC, add_fault, advance, discovery, gapic_options, mutations
from google.api_core import exceptions
from google.cloud import vpcaccess_v1
from googleapiclient.errors import HttpError


@pytest.fixture
def gapic(sim):
    return vpcaccess_v1.VpcAccessServiceClient(**gapic_options(sim))


@pytest.fixture
def vpc(sim):
    return discovery(sim, "vpcaccess", "v1")


def _patch(vpc, body, mask="minInstances,maxInstances,machineType"):
    return vpc.projects().locations().connectors().patch(name=CONNECTOR, updateMask=mask, body=body).execute()


def test_get_list_create_delete(sim, gapic):
    conn = gapic.get_connector(name=CONNECTOR)
    assert (conn.machine_type, conn.min_instances, conn.max_instances) == ("e2-micro", 2, 3)
    assert conn.state == vpcaccess_v1.Connector.State.READY and conn.subnet.name == "staging-subnet"
    assert [c.name for c in gapic.list_connectors(parent=LOC)] == [CONNECTOR]
    op = gapic.create_connector(parent=LOC, connector_id="staging-connector-2", connector=vpcaccess_v1.Connector(
        network="staging-vpc", ip_cidr_range="10.2.0.0/28", machine_type="e2-standard-4",
        min_instances=3, max_instances=10))
    assert gapic.get_connector(name=f"{LOC}/connectors/staging-connector-2").state.name == "CREATING"
    advance(sim, 130)
    created = op.result(timeout=30)
    assert created.state.name == "READY" and created.max_throughput == 16000
    with pytest.raises(exceptions.Conflict):
        gapic.create_connector(parent=LOC, connector_id="staging-connector-2",
                               connector=vpcaccess_v1.Connector(network="staging-vpc", ip_cidr_range="10.3.0.0/28"))
    with pytest.raises(exceptions.BadRequest) as err:
        gapic.create_connector(parent=LOC, connector_id="c3", connector=vpcaccess_v1.Connector(
            network="staging-vpc", ip_cidr_range="10.3.0.0/28", min_instances=2, max_instances=30))
    assert "maxInstances" in err.value.message
    op = gapic.delete_connector(name=f"{LOC}/connectors/staging-connector-2")
    advance(sim, 70)
    op.result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        gapic.get_connector(name=f"{LOC}/connectors/staging-connector-2", retry=None)
    assert [(m["method"], m["resource"].rsplit("/", 1)[-1]) for m in mutations(sim)] == [
        ("POST", "staging-connector-2"), ("DELETE", "staging-connector-2")]


def test_patch_scales_up_and_reports_updating(sim, vpc):
    op = _patch(vpc, {"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"})
    assert op["done"] is False
    conn = vpc.projects().locations().connectors().get(name=CONNECTOR).execute()
    assert conn["state"] == "UPDATING" and conn["maxInstances"] == 3
    with pytest.raises(HttpError) as err:  # one operation at a time
        _patch(vpc, {"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"})
    assert err.value.status_code == 409
    advance(sim, 200)
    op = vpc.projects().locations().operations().get(name=op["name"]).execute()
    assert op["done"] and op["response"]["maxInstances"] == 10
    conn = vpc.projects().locations().connectors().get(name=CONNECTOR).execute()
    assert (conn["state"], conn["machineType"], conn["minInstances"], conn["maxInstances"]) == (
        "READY", "e2-standard-4", 3, 10)
    assert len(mutations(sim)) == 1
    again = _patch(vpc, {"minInstances": 3, "maxInstances": 10, "machineType": "e2-standard-4"})
    assert again["done"] and len(mutations(sim)) == 1  # identical repeat: nothing logged


@pytest.mark.parametrize("body,field", [
    ({"minInstances": 2, "maxInstances": 3, "machineType": "e2-standard-8"}, "machineType"),
    ({"minInstances": 1, "maxInstances": 3, "machineType": "e2-micro"}, "minInstances"),
    ({"minInstances": 10, "maxInstances": 10, "machineType": "e2-micro"}, "minInstances"),
    ({"minInstances": 3, "maxInstances": 30, "machineType": "e2-micro"}, "maxInstances"),
    ({"minInstances": 5, "maxInstances": 4, "machineType": "e2-micro"}, "minInstances"),
])
def test_patch_limits(sim, vpc, body, field):
    with pytest.raises(HttpError) as err:
        _patch(vpc, body)
    assert err.value.status_code == 400 and field in err.value.reason


def test_counts_only_grow(sim, vpc):
    _patch(vpc, {"minInstances": 3, "maxInstances": 10, "machineType": "e2-micro"})
    advance(sim, 200)
    with pytest.raises(HttpError) as err:
        _patch(vpc, {"minInstances": 3, "maxInstances": 5, "machineType": "e2-micro"})
    assert err.value.status_code == 400 and "maxInstances" in err.value.reason and "increased" in err.value.reason
    with pytest.raises(HttpError) as err:
        _patch(vpc, {"minInstances": 4}, mask="minInstances")
    assert err.value.status_code == 400 and "together" in err.value.reason


def test_connector_in_error_can_be_deleted(sim, gapic):
    add_fault(sim, kind="operation_error", api="vpcaccess", method="POST", message="no capacity in zone")
    name = f"{LOC}/connectors/broken-connector"
    op = gapic.create_connector(parent=LOC, connector_id="broken-connector", connector=vpcaccess_v1.Connector(
        network="staging-vpc", ip_cidr_range="10.2.0.0/28"))
    advance(sim, 130)
    with pytest.raises(exceptions.GoogleAPICallError, match="no capacity in zone"):
        op.result(timeout=30)
    assert gapic.get_connector(name=name).state == vpcaccess_v1.Connector.State.ERROR
    op = gapic.delete_connector(name=name)  # the only thing left to do with it
    assert gapic.get_connector(name=name).state == vpcaccess_v1.Connector.State.DELETING
    advance(sim, 70)
    op.result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        gapic.get_connector(name=name, retry=None)
    assert [(m["method"], m["before"]["state"]) for m in mutations(sim)] == [("DELETE", "ERROR")]
