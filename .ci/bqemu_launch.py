"""Starts bqemulator offline: its start-up runs DuckDB `INSTALL spatial`, which needs the
internet and makes it exit when that fails. Only GEOGRAPHY needs spatial, so the loader is
wrapped to log and go on; then the emulator's own CLI runs with the given arguments."""

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

from bqemulator import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main())
