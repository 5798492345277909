"""SQLite persistence: resources, operations, the mutation log, faults and meta values.

All state lives here so that a restarted simulator process continues exactly where it
stopped. The server handles requests on a single event loop and every handler does its
store work without awaiting in between, so one connection in autocommit mode is enough;
multi-statement changes that must be atomic use :meth:`Store.transaction`.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    api  TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (api, name)
);
CREATE INDEX IF NOT EXISTS resources_kind ON resources (api, kind);
CREATE TABLE IF NOT EXISTS operations (
    name    TEXT PRIMARY KEY,
    api     TEXT NOT NULL,
    pending INTEGER NOT NULL,
    due     REAL,
    data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS operations_pending ON operations (pending, due);
CREATE TABLE IF NOT EXISTS mutations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    time       TEXT NOT NULL,
    api        TEXT NOT NULL,
    method     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    request_id TEXT,
    operation  TEXT,
    before     TEXT,
    after      TEXT
);
CREATE TABLE IF NOT EXISTS faults (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


def resource_kind(name: str) -> str:
    """The collection a resource name belongs to: ``.../services/x`` -> ``services``."""
    parts = name.split("/")
    return parts[-2] if len(parts) >= 2 else ""


class Store:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._depth = 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self.db.execute("ROLLBACK")
            raise
        self._depth -= 1
        if self._depth == 0:
            self.db.execute("COMMIT")

    # ---- resources -------------------------------------------------------------
    def get(self, api: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM resources WHERE api=? AND name=?", (api, name)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, api: str, name: str, data: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO resources (api, kind, name, data) VALUES (?,?,?,?)",
            (api, resource_kind(name), name, json.dumps(data)),
        )

    def delete(self, api: str, name: str) -> None:
        self.db.execute("DELETE FROM resources WHERE api=? AND name=?", (api, name))

    def list(self, api: str, kind: str | None = None, prefix: str = "") -> list[dict[str, Any]]:
        sql = "SELECT data FROM resources WHERE api=? AND name LIKE ? ESCAPE '\\'"
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args: list[Any] = [api, like]
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        sql += " ORDER BY name"
        return [json.loads(r[0]) for r in self.db.execute(sql, args)]

    def all_resources(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for api, name, data in self.db.execute("SELECT api, name, data FROM resources ORDER BY api, name"):
            out.setdefault(api, {})[name] = json.loads(data)
        return out

    # ---- operations ------------------------------------------------------------
    def op_get(self, name: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM operations WHERE name=?", (name,)).fetchone()
        return json.loads(row[0]) if row else None

    def op_put(self, op: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO operations (name, api, pending, due, data) VALUES (?,?,?,?,?)",
            (op["name"], op["api"], 0 if op["done"] else 1, op.get("due"), json.dumps(op)),
        )

    def op_delete(self, name: str) -> None:
        self.db.execute("DELETE FROM operations WHERE name=?", (name,))

    def ops_due(self, now: float) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT data FROM operations WHERE pending=1 AND due IS NOT NULL AND due<=? ORDER BY due, rowid",
            (now,),
        )
        return [json.loads(r[0]) for r in rows]

    def ops_list(self, api: str, prefix: str = "") -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT data FROM operations WHERE api=? AND substr(name, 1, ?)=? ORDER BY rowid",
            (api, len(prefix), prefix),
        )
        return [json.loads(r[0]) for r in rows]

    def ops_all(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT data FROM operations ORDER BY rowid")]

    # ---- mutation log ----------------------------------------------------------
    def log_mutation(self, entry: dict[str, Any]) -> int:
        cur = self.db.execute(
            "INSERT INTO mutations (time, api, method, resource, request_id, operation, before, after)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                entry["time"], entry["api"], entry["method"], entry["resource"], entry.get("request_id"),
                entry.get("operation"), json.dumps(entry.get("before")), json.dumps(entry.get("after")),
            ),
        )
        return int(cur.lastrowid)

    def mutations(self, since: int = 0) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT seq, time, api, method, resource, request_id, operation, before, after"
            " FROM mutations WHERE seq>? ORDER BY seq",
            (since,),
        )
        keys = ("seq", "time", "api", "method", "resource", "request_id", "operation", "before", "after")
        out = []
        for row in rows:
            entry = dict(zip(keys, row))
            entry["before"] = json.loads(entry["before"]) if entry["before"] is not None else None
            entry["after"] = json.loads(entry["after"]) if entry["after"] is not None else None
            out.append(entry)
        return out

    # ---- faults ----------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) | {"id": r[1]} for r in self.db.execute("SELECT data, id FROM faults ORDER BY id")]

    def fault_add(self, data: dict[str, Any]) -> int:
        cur = self.db.execute("INSERT INTO faults (data) VALUES (?)", (json.dumps(data),))
        return int(cur.lastrowid)

    def fault_put(self, fault: dict[str, Any]) -> None:
        data = {k: v for k, v in fault.items() if k != "id"}
        self.db.execute("UPDATE faults SET data=? WHERE id=?", (json.dumps(data), fault["id"]))

    def faults_clear(self) -> None:
        self.db.execute("DELETE FROM faults")

    # ---- meta ------------------------------------------------------------------
    def meta_get(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def meta_set(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?,?)", (key, json.dumps(value)))

    def meta_delete_prefix(self, prefix: str) -> None:
        self.db.execute("DELETE FROM meta WHERE substr(key, 1, ?)=?", (len(prefix), prefix))

    def next_counter(self, key: str, start: int = 1) -> int:
        value = int(self.meta_get(f"counter:{key}", start - 1)) + 1
        self.meta_set(f"counter:{key}", value)
        return value

    # ---- whole-world reset -----------------------------------------------------
    def wipe_world(self) -> None:
        """Forget resources, operations, mutations and faults.

        The clock and the mutation sequence are kept, so ``seq`` and simulated time stay
        monotonic for a client that polls across a reset.
        """
        for table in ("resources", "operations", "mutations", "faults"):
            self.db.execute(f"DELETE FROM {table}")
        self.meta_delete_prefix("counter:")
        self.meta_delete_prefix("reqid:")
        self.meta_delete_prefix("world:")
