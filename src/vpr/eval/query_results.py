"""The per-query results file, metrics/eval/<set>.queries.tsv: written by the evaluate stage, tracked in git next
to the metrics, read by the report and by vpr.compare (through vpr.eval.experiments) for paired tests."""

from __future__ import annotations

import csv

QUERY_COLUMNS = ("query", "name", "night", "positives", "first_correct", "top")


def write_queries(path, rows: list[dict]) -> None:
    """Per-query results as a small tab-separated file tracked in git next to the metrics (vpr.compare reads
    them for paired tests); empty first_correct = no correct match in the top k."""
    from vpr.io import atomic_file

    with atomic_file(path) as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(QUERY_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r["query"],
                    r["name"],
                    r["night"],
                    "" if r["positives"] is None else r["positives"],
                    "" if r["first_correct"] is None else r["first_correct"],
                    " ".join(map(str, r["top"])),
                ]
            )


def read_queries(fh) -> list[dict]:
    """Rows of a per-query results file (an open text file), as write_queries wrote them."""
    rows = []
    for r in csv.DictReader(fh, delimiter="\t"):
        rows.append(
            dict(
                query=int(r["query"]),
                name=r["name"],
                night=int(r["night"]),
                positives=int(r["positives"]) if r["positives"] else None,
                first_correct=int(r["first_correct"]) if r["first_correct"] else None,
                top=[int(x) for x in r["top"].split()],
            )
        )
    return rows
