"""Starts bqemulator with two workarounds, then runs its own CLI with the given arguments.

1. Offline start: its start-up runs DuckDB `INSTALL spatial`, which needs the internet and
   makes it exit when that fails. Only GEOGRAPHY needs spatial, so the loader is wrapped to
   log and go on.
2. Parquet loads read files with DuckDB's `read_parquet`, which turns `key=value` folders into
   extra columns (hive partitioning); the lake's `run=<id>/` folders would then add a column.
   Real BigQuery only does that when a load asks for hivePartitioningOptions, so loads here
   read the files as they are."""

import sys

from bqemulator.storage import engine


_original = engine.DuckDBEngine._load_spatial


def _load_spatial_if_possible(self, *args, **kwargs):
    try:
        return _original(self, *args, **kwargs)
    except Exception as exc:  # offline: no spatial extension, no GEOGRAPHY
        print(f"bqemu_launch: spatial extension unavailable ({exc}); GEOGRAPHY disabled",
              file=sys.stderr)
        return None


engine.DuckDBEngine._load_spatial = _load_spatial_if_possible

from bqemulator.jobs import executor  # noqa: E402


def _load_parquet_without_hive(path, target_ref, ctx):
    ctx.engine.execute(
        f"INSERT INTO {target_ref} SELECT * FROM read_parquet(?, hive_partitioning = false)",
        [path],
    )


executor._load_parquet = _load_parquet_without_hive
executor._LOAD_FORMAT_HANDLERS["PARQUET"] = _load_parquet_without_hive

from bqemulator import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main())
