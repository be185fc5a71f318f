"""``python -m phfe.report SWEEP_DIR [--out DIR]``: one report of a Hydra sweep's finished jobs.

Prints the jobs and the metrics tables, and writes ``sweep_report.md``, ``sweep_summary.csv`` and the plots
into ``--out`` (default: the sweep directory). Exits with status 2 when the directory has no finished job.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from phfe.eval.sweep import load_sweep, overview_table, sweep_tables, unfinished_jobs, write_sweep_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phfe.report", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the sweep directory (e.g. outputs/multirun/<date>/<time>)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the sweep directory)")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        parser.error(f"{args.sweep}: no such directory")
    jobs = load_sweep(args.sweep)
    if not jobs:
        parser.error(f"{args.sweep}: no finished job (no results.json with status finished)")
    print(f"{overview_table(jobs, unfinished_jobs(args.sweep))}\n\n{sweep_tables(jobs)}\n")
    for path in write_sweep_report(args.sweep, args.out).values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
