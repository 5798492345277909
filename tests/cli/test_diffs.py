"""Field-level diffs of before/after records and JSON-like values (cli/diffs.py)."""

from __future__ import annotations

import copy

from cli.diffs import MISSING, FieldChange, changed_fields, diff_json, format_value, render_diff_lines


def _service(pool: str, memory: str, extra_env: list[dict] | None = None) -> dict:
    env = [{"name": "ENVIRONMENT", "value": "staging"},
           {"name": "DATABASE_POOL_SIZE", "value": pool},
           {"name": "DATABASE_URL", "valueSource": {"secretKeyRef": {"secret": "db", "version": "latest"}}}]
    return {"template": {"containers": [{"image": "backend:1", "env": env + (extra_env or []),
                                         "resources": {"limits": {"cpu": "1", "memory": memory}}}],
                         "scaling": {"maxInstanceCount": 4}},
            "latestReadyRevision": "svc-00003-ynn"}


def test_a_cloud_run_template_diff_names_only_the_fields_that_changed():
    before = _service("5", "4Gi")
    after = _service("8", "6Gi", [{"name": "VPC_CONNECTOR_SCALING_BUFFER", "value": "30"}])
    after["template"]["scaling"]["minInstanceCount"] = 2
    assert render_diff_lines(before, after) == [
        "template.containers[0].env.DATABASE_POOL_SIZE: 5 → 8",
        "(added) template.containers[0].env.VPC_CONNECTOR_SCALING_BUFFER: 30",
        "template.containers[0].resources.limits.memory: 4Gi → 6Gi",
        "(added) template.scaling.minInstanceCount: 2",
    ]


def test_named_items_are_matched_by_name_not_position():
    before = _service("5", "4Gi")
    after = copy.deepcopy(before)
    # A variable inserted first shifts every other one: none of them changed.
    after["template"]["containers"][0]["env"].insert(0, {"name": "NEW", "value": "1"})
    del after["template"]["containers"][0]["env"][2]  # DATABASE_POOL_SIZE
    assert changed_fields(before, after) == [
        FieldChange("template.containers[0].env.DATABASE_POOL_SIZE", "5", MISSING),
        FieldChange("template.containers[0].env.NEW", MISSING, "1"),
    ]
    # A named item that is more than a name/value pair keeps its fields in the path.
    after = copy.deepcopy(before)
    after["template"]["containers"][0]["env"][2]["valueSource"]["secretKeyRef"]["version"] = "7"
    assert render_diff_lines(before, after) == [
        "template.containers[0].env.DATABASE_URL.valueSource.secretKeyRef.version: latest → 7"]


def test_unnamed_objects_by_index_plain_lists_whole_and_null_distinct_from_absent():
    before = {"traffic": [{"percent": 50, "revision": "r1"}, {"percent": 50, "revision": "r2"}],
              "revisions": ["r1", "r2"], "connector": None, "flag": True}
    after = {"traffic": [{"percent": 100, "revision": "r2"}], "revisions": ["r2"],
             "flag": False}
    assert render_diff_lines(before, after) == [
        "(removed) connector: null",
        "flag: true → false",
        "revisions: [r1, r2] → [r2]",
        "traffic[0].percent: 50 → 100",
        "traffic[0].revision: r1 → r2",
        "(removed) traffic[1]: {percent: 50, revision: r2}",
    ]
    assert changed_fields({"a": 1}, {"a": 1}) == []
    assert render_diff_lines(5, 8) == ["5 → 8"]
    # Same value, other type: shown, since "8" and 8 are different requests to an API.
    assert render_diff_lines({"n": "8"}, {"n": 8}) == ["n: 8 → 8"]


def test_values_are_json_like_never_python_reprs():
    assert format_value(None) == "null" and format_value(True) == "true"
    assert format_value("6Gi") == "6Gi" and format_value(8) == "8"
    assert format_value({"LATEST": 100, "note": "two words", "empty": ""}) == \
        '{LATEST: 100, note: "two words", empty: ""}'
    assert format_value(["a", None, False]) == "[a, null, false]"
    # A string that would read as something else alone is quoted.
    assert format_value("") == '""' and format_value("null") == '"null"'
    assert format_value("line\nbreak") == '"line\\nbreak"'
    for value in (None, True, {"a": None}, ["x", True]):
        assert not any(r in format_value(value) for r in ("None", "True", "'"))


def test_long_values_are_shortened_with_an_ellipsis():
    name = "projects/netra-staging/locations/us-central1/connectors/staging-connector"
    short = format_value(name, 30)
    # A name keeps its end, which tells it apart from its neighbours.
    assert len(short) == 30 and short.endswith("staging-connector") and "…" in short
    listed = format_value([name] * 3, 40)
    assert len(listed) == 40 and listed.startswith("[projects/") and listed.endswith("…")


def test_limit_and_json_form():
    before = {f"k{i}": i for i in range(5)}
    after = {f"k{i}": i + 1 for i in range(5)}
    lines = render_diff_lines(before, after, limit=2)
    assert lines == ["k0: 0 → 1", "k1: 1 → 2", "and 3 more field(s)"]
    assert diff_json({"a": 1, "b": 2}, {"b": 3, "c": None}) == [
        {"path": "a", "change": "removed", "before": 1},
        {"path": "b", "change": "changed", "before": 2, "after": 3},
        {"path": "c", "change": "added", "after": None},
    ]
