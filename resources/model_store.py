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
        *,
        dataset: str | None = None,
        protocol: str | None = None,
        cutoff_rule: str | None = None,
        gate_passed: bool | None = None,
        gate_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Write the artifact (once per content hash) and a registry row.

        (dataset, protocol, cutoff_rule) is the comparison key (recsys.promotion.comparison_key);
        gate_passed / gate_details the promotion gate's verdict on this model, when it was judged.
        """
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
                "dataset": [dataset],
                "protocol": [protocol],
                "cutoff_rule": [cutoff_rule],
                "gate_passed": [gate_passed],
                "gate_details": [None if gate_details is None else json.dumps(gate_details, default=str)],
            },
            schema_overrides={c: pl.String for c in ("dataset", "protocol", "cutoff_rule", "gate_details")} | {"gate_passed": pl.Boolean},
        )
        with warehouse.connect() as con:
            con.register("_row", row.to_arrow())
            con.execute(
                f"INSERT INTO models.registry ({', '.join(REGISTRY_COLUMNS)}) "
                "SELECT name, version, path, CAST(params AS JSON), CAST(metrics AS JSON), run_id, trained_at, promoted, "
                "dataset, protocol, cutoff_rule, gate_passed, CAST(gate_details AS JSON) FROM _row"
            )
            con.unregister("_row")
        return {"name": name, "version": version, "path": str(path), "sha256": digest}

    def save_params(
        self, warehouse: Warehouse, name: str, params: dict[str, Any], metrics: dict[str, Any], run_id: str, **key
    ) -> dict[str, Any]:
        """A registry row for a choice of hyper-parameters without a model worth keeping (a candidate
        channel's valid-fold search): the artifact is the params as JSON, so equal choices share a version.
        ``key``: dataset / protocol / cutoff_rule, as for ``save``."""
        payload = json.dumps(params, sort_keys=True, default=str).encode()
        return self.save(warehouse, name, payload, params, metrics, run_id, **key)

    def load(self, path: str) -> bytes:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"model artifact {p} is missing; expected a file written by ModelStore.save")
        return p.read_bytes()

    def latest(
        self,
        warehouse: Warehouse,
        name: str,
        promoted_only: bool = False,
        *,
        dataset: str | None = None,
        protocol: str | None = None,
        cutoff_rule: str | None = None,
    ) -> dict[str, Any] | None:
        """The most recently trained registry row of ``name``, or None.

        ``promoted_only`` keeps promoted rows; each of dataset / protocol / cutoff_rule that is given
        must match exactly (like with like: rows without a key, made before keys existed, never
        match a given one). Unset filters are not applied.
        """
        where, args = ["name = $name"], {"name": name}
        if promoted_only:
            where.append("promoted")
        for column, value in (("dataset", dataset), ("protocol", protocol), ("cutoff_rule", cutoff_rule)):
            if value is not None:
                where.append(f"{column} = ${column}")
                args[column] = value
        rows = warehouse.query(
            "SELECT name, version, path, CAST(metrics AS VARCHAR) AS metrics, run_id, trained_at, promoted, dataset, protocol, "
            "cutoff_rule, gate_passed, CAST(gate_details AS VARCHAR) AS gate_details FROM models.registry "
            f"WHERE {' AND '.join(where)} ORDER BY trained_at DESC LIMIT 1",
            args,
        )
        if rows.is_empty():
            return None
        row = rows.row(0, named=True)
        row["metrics"] = json.loads(row["metrics"])
        row["gate_details"] = None if row["gate_details"] is None else json.loads(row["gate_details"])
        return row

    def promote(self, warehouse: Warehouse, name: str, version: str, run_id: str | None = None) -> None:
        """Mark ``name``@``version`` (of ``run_id``, when given) promoted, and un-promote the other rows of
        ``name`` with the same (dataset, protocol, cutoff_rule): promotion is per comparison key."""
        chosen = "version = $v" + (" AND run_id = $r" if run_id is not None else "")
        args = {"n": name, "v": version} | ({"r": run_id} if run_id is not None else {})
        with warehouse.connect() as con:
            con.begin()
            keys = con.execute(f"SELECT DISTINCT dataset, protocol, cutoff_rule FROM models.registry WHERE name = $n AND {chosen}", args)
            keys = keys.fetchall()
            if not keys:
                con.rollback()
                raise KeyError(f"no models.registry row for {name}@{version}" + (f" of run {run_id}" if run_id else ""))
            for dataset, protocol, cutoff_rule in keys:
                con.execute(
                    f"UPDATE models.registry SET promoted = coalesce({chosen}, FALSE) WHERE name = $n "
                    "AND dataset IS NOT DISTINCT FROM $d AND protocol IS NOT DISTINCT FROM $p AND cutoff_rule IS NOT DISTINCT FROM $c",
                    args | {"d": dataset, "p": protocol, "c": cutoff_rule},
                )
            con.commit()


REGISTRY_COLUMNS = (
    "name",
    "version",
    "path",
    "params",
    "metrics",
    "run_id",
    "trained_at",
    "promoted",
    "dataset",
    "protocol",
    "cutoff_rule",
    "gate_passed",
    "gate_details",
)
