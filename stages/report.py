"""Stage report: reports/index.html, one self-contained offline page of the run (tables, curves, maps,
pictures, params)."""

import os

from _common import load_config, run


def main():
    from vpr.io import atomic_file
    from vpr.viz.report_page import ReportInputs, build_report

    cfg = load_config("report")
    sets = {
        name: dict(
            metrics=f"metrics/eval/{name}.json",
            queries=f"metrics/eval/{name}.queries.tsv",
            curve=f"metrics/curves/{name}.csv",
            predictions=f"reports/predictions/{name}",
            gt=f"data/gt/{name}",
            features=f"data/features/{name}",
        )
        for name in cfg.data.test
    }
    page = build_report(
        ReportInputs(
            sets=sets,
            recall_table="metrics/recalls.md",
            train_log_dir="metrics/train/plots/metrics",
            train_summary="metrics/train/metrics.json",
            train_time="metrics/train/time.json",
            train_gt="data/gt/train",
            val_gt="data/gt/val",
            params_path="params.yaml",
            radius_m=cfg.gt.radius_m,
        )
    )
    with atomic_file("reports/index.html") as fh:
        fh.write(page)
    os.chmod(
        "reports/index.html", 0o644
    )  # a page to share: readable by others, unlike the temp file it was
    print(f"report: reports/index.html ({len(page) / 1e6:.1f} MB, {len(sets)} evaluation set(s))")


if __name__ == "__main__":
    run(main)
