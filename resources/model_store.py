"""Model artifacts: content-hashed files under $RECDAG_DATA_DIR/models plus a models.registry row."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from resources import settings
from resources.warehouse import Warehouse, utcnow


class ModelStore(dg.ConfigurableResource):
    data_dir: str = Field(default_factory=lambda: str(settings.data_dir()))

    def save(
        self,
        warehouse: Warehouse,
        name: str,
        payload: bytes,
        params: dict[str, Any],
        metrics: dict[str, Any],
        run_id: str,
        promoted: bool = False,
    ) -> dict[str, Any]:
        digest = hashlib.sha256(payload).hexdigest()
        version = digest[:16]
        path = Path(self.data_dir) / "models" / name / f"{version}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(payload)
            tmp.replace(path)
        row = pl.DataFrame(
            {
                "name": [name],
                "version": [version],
                "path": [str(path)],
                "params": [json.dumps(params, default=str)],
                "metrics": [json.dumps(metrics, default=str)],
                "run_id": [run_id],
                "trained_at": [utcnow()],
                "promoted": [promoted],
            }
        )
        with warehouse.connect() as con:
            con.register("_row", row.to_arrow())
            con.execute(
                "INSERT INTO models.registry SELECT name, version, path, CAST(params AS JSON), "
                "CAST(metrics AS JSON), run_id, trained_at, promoted FROM _row"
            )
            con.unregister("_row")
        return {"name": name, "version": version, "path": str(path), "sha256": digest}

    def load(self, path: str) -> bytes:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"model artifact {p} is missing; expected a file written by ModelStore.save")
        return p.read_bytes()

    def latest(self, warehouse: Warehouse, name: str, promoted_only: bool = False) -> dict[str, Any] | None:
        where = "AND promoted" if promoted_only else ""
        rows = warehouse.query(
            f"SELECT name, version, path, CAST(metrics AS VARCHAR) AS metrics, run_id, trained_at FROM models.registry "
            f"WHERE name = $name {where} ORDER BY trained_at DESC LIMIT 1",
            {"name": name},
        )
        if rows.is_empty():
            return None
        row = rows.row(0, named=True)
        row["metrics"] = json.loads(row["metrics"])
        return row

    def promote(self, warehouse: Warehouse, name: str, version: str) -> None:
        with warehouse.connect() as con:
            con.execute("UPDATE models.registry SET promoted = (version = $v) WHERE name = $n", {"v": version, "n": name})
