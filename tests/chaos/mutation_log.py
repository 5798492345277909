""""No change applied twice", defined over gcpsim's mutation log (``GET /_sim/mutations``).

Each log entry is one accepted write: ``api``, ``method``, ``resource``, ``request_id``,
``operation``, and the resource's ``before`` and ``after`` state. Output-only fields
(etags, generations, timestamps, conditions, revision bookkeeping, fingerprints) change
with every write, so they are dropped first; what remains is the configuration a write
changed. A *change* is then:

- a create (``before`` is null): the created configuration in its collection, e.g. an
  alert policy with that display name and conditions (a second create is a duplicate
  even though the server names it differently);
- a delete (``after`` is null): the deleted resource;
- an update: each configuration field it changed, with its old and new value, e.g.
  ``template.containers`` of a service going from A to B.

A change applied twice is the same change in two entries: the same resource going from
the same old value to the same new value of a field twice (a deploy re-issued after its
own restore), the same resource deleted twice, the same configuration created twice.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

# Output-only or per-write bookkeeping: never part of what a write means to change.
BOOKKEEPING = frozenset({
    "etag", "generation", "observedGeneration", "updateTime", "createTime", "deleteTime",
    "lastModifier", "creator", "conditions", "terminalCondition", "reconciling",
    "latestCreatedRevision", "latestReadyRevision", "trafficStatuses", "uri", "urls",
    "settingsVersion", "fingerprint", "creationTimestamp", "creationRecord",
    "mutationRecord", "id", "uid", "selfLink", "logUri", "expireTime", "name",
})


def significant(value: Any) -> Any:
    """``value`` without bookkeeping fields, at every depth."""
    if isinstance(value, dict):
        return {k: significant(v) for k, v in value.items() if k not in BOOKKEEPING}
    if isinstance(value, list):
        return [significant(v) for v in value]
    return value


def _leaves(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Fields that differ, down through objects; a list is compared as one value."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            out += _leaves(before.get(key), after.get(key), f"{path}.{key}" if path else key)
        return out
    return [] if before == after else [(path, before, after)]


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def changes(entry: dict[str, Any]) -> list[tuple]:
    """The changes one mutation-log entry made (see the module docstring)."""
    api, resource = entry["api"], entry["resource"]
    before, after = entry.get("before"), entry.get("after")
    if before is None:
        collection = resource.rsplit("/", 1)[0]
        return [("create", api, collection, _canon(significant(after)))]
    if after is None:
        return [("delete", api, resource)]
    return [("update", api, resource, path, _canon(old), _canon(new))
            for path, old, new in _leaves(significant(before), significant(after))]


def applied_twice(mutations: list[dict[str, Any]]) -> list[str]:
    """Every change found in more than one entry, described with the entries' seq numbers."""
    seen: dict[tuple, list[int]] = defaultdict(list)
    for entry in mutations:
        for change in changes(entry):
            seen[change].append(entry["seq"])
    return [f"{change[0]} {change[2]} {change[3] if len(change) > 3 else ''}"[:200]
            + f" in entries {seqs}" for change, seqs in seen.items() if len(seqs) > 1]
