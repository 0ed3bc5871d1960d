"""Run the benchmarks, print every figure as ``name: measured (target)``, and rewrite benchmarks/RESULTS.md.

    python benchmarks/run.py                     # everything (about 20 minutes on 2 CPU cores, more when busy)
    python benchmarks/run.py --only knn,large    # a subset: train, datapath, extract, knn, large, dvc, real, methods, suites
    python benchmarks/run.py --quick             # fewer repetitions
    python benchmarks/run.py --full-repro        # measure the full `dvc repro` again (else the kept one)
    python benchmarks/run.py --only dvc --full-repro --capability avx2   # ... with a plain AVX2 CPU's kernels

Ratios are measured within one run: numerator and denominator in the same process, interleaved, repeated;
the figure is the median, the spread is given. Other work on the machine moves the figures: RESULTS.md
records the load average before and after each benchmark.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

from common import ROOT, Figure, figures_to_json, load_average, machine, save_json

STORE = (
    ROOT / "benchmarks" / "results" / "figures.json"
)  # committed: every figure with its machine and commit

ORDER = ("train", "datapath", "extract", "knn", "large", "dvc", "real", "methods", "suites")
TARGETS = {  # the wording of each target, for the table
    "train": "time per training step / pure forward+backward on the same batch of random tensors <= 1.15",
    "datapath": "640x480 JPEG photos -> 320x320 training batches with RandAugment(3), 2 loader workers, no model: "
    "images/s >= 0.8 x pure JPEG decode on the same workers and >= 2 x the course template's data path",
    "extract": "extraction images/s / pure forward images/s >= 0.9",
    "knn": "exact kNN + recall (27,191 x 1,000 x 512-D) <= 1.1 x the fastest float32 GEMM of the same shapes in the "
    "process (numpy, torch, faiss: the floor of any exact search), measured in the same run, with torch's own "
    "CPU kernels and limited to avx2 and to default; the reference protocol's ratio as a second line",
    "large": "1M float16 memory-mapped descriptors: evaluation peak memory <= 1.3 x descriptor bytes; "
    "approximate index recall loss reported",
    "methods": "seconds per training epoch of each training method at the budget the README compares them with, "
    "over the places method's (reported: what an equal time budget means)",
    "real": "first dvc repro of the real-photo profile (recipe real_photos, Cambridge street view) on a fresh copy "
    "<= 15 min on 2 CPU cores (per-stage split)",
    "suites": "the suite runner's own time (python -m vpr.suites run: everything but the DVC runs it launches) "
    "<= 5 % of the runs' time",
    "dvc": "full dvc repro of the shipped params on a fresh copy <= 5 min on a 2-core AVX2 CPU (per-stage split); "
    "dvc exp run changing only a visualize or evaluate param <= 5 % of a full dvc repro",
}


CODE = {  # what each benchmark measures: a commit touching these after a figure was taken makes it older than the code
    "train": [
        "src/vpr/train",
        "src/vpr/models",
        "src/vpr/data/loading.py",
        "benchmarks/bench_train.py",
    ],
    "datapath": ["src/vpr/data", "benchmarks/bench_datapath.py"],
    "extract": [
        "src/vpr/eval/extract.py",
        "src/vpr/eval/extract_set.py",
        "src/vpr/eval/prepare.py",
        "src/vpr/data/images.py",
        "src/vpr/models",
        "benchmarks/bench_extract.py",
    ],
    "knn": [
        "src/vpr/eval/knn.py",
        "src/vpr/eval/gemm.py",
        "src/vpr/eval/retrieval.py",
        "benchmarks/bench_knn.py",
    ],
    "large": ["src/vpr/eval", "benchmarks/bench_large.py"],
    "dvc": ["src", "stages", "dvc.yaml", "params.yaml", "benchmarks/bench_dvc.py"],
    "real": [
        "src",
        "stages",
        "dvc.yaml",
        "params.yaml",
        "benchmarks/bench_real.py",
        "benchmarks/bench_dvc.py",
    ],
    "methods": ["src/vpr/train", "benchmarks/bench_methods.py"],
}


def _git(*args) -> str:
    import subprocess

    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def changed_since(commit: str | None, paths: list[str]) -> str:
    """The commits after ``commit`` that touched ``paths`` (short hashes, newest first); '' when none or unknown."""
    if not commit:
        return ""
    return " ".join(
        _git("log", "--format=%h", f"{commit.split('+')[0]}..HEAD", "--", *paths).split()
    )


def _bench(name: str, args):
    if name == "train":
        import bench_train

        return bench_train.run(args.quick, args.device)
    if name == "datapath":
        import bench_datapath

        return bench_datapath.run(args.quick)
    if name == "extract":
        import bench_extract

        return bench_extract.run(args.quick, args.device)
    if name == "knn":
        import bench_knn

        return bench_knn.run(args.quick)
    if name == "large":
        import bench_large

        return bench_large.run(args.quick, args.hnsw)
    if name == "dvc":
        import bench_dvc

        return bench_dvc.run(args.full_repro, args.capability)
    if name == "real":
        import bench_real

        return bench_real.run(args.capability)
    if name == "methods":
        import bench_methods

        return bench_methods.run(args.quick)
    if name == "suites":
        import bench_suites

        return bench_suites.run()
    raise SystemExit(f"unknown benchmark '{name}'; choose from {', '.join(ORDER)}")


def provenance(name: str, sec: dict, started: str) -> str:
    """Where and on which code a benchmark's figures were measured, and whether they were re-run this time."""
    m = sec.get("machine", {})
    where = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('cpu_capability', '?')}"
    rerun = "re-run now" if sec.get("when") == started else f"kept from {sec.get('when')}"
    newer = changed_since(sec.get("commit"), CODE[name])
    shown = " ".join(newer.split()[:3]) + (
        f" and {len(newer.split()) - 3} more" if len(newer.split()) > 3 else ""
    )
    stale = f"; **older than the code** (changed since by {shown})" if newer else ""
    return f"{where}; commit {sec.get('commit', '?')}; {rerun}{stale}"


def _load_line(sec: dict) -> str:
    if "load_before" not in sec:
        return f"Load average: {sec.get('load_note', 'not recorded')}."
    before, after = (" / ".join(f"{x:.2f}" for x in sec[k]) for k in ("load_before", "load_after"))
    return f"Load average before: {before}; after: {after}; {sec['seconds']:.0f} s."


def write_results(sections: dict, info: dict, started: str, args) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Latest run: {started} (`python benchmarks/run.py{' ' + ' '.join(args.argv) if args.argv else ''}`); "
        "every figure is a ratio measured within one run (numerator and denominator in the same process, "
        "interleaved and repeated; the median, with the spread).",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        "",
        "Other jobs may run on the machine during a benchmark (the `large` one shared it with queued DVC "
        "experiments). The load average "
        "(1 / 5 / 15 min) before and after each benchmark is listed with it; a load above 2 on 2 cores means "
        "the benchmark got only part of the CPU, which slows multi-threaded work (OpenMP) more than "
        "single-threaded work and moves ratios.",
        "",
    ]
    lines += [
        "## Figures",
        "",
        "Each figure names its machine (CPU, CPU capability of its kernels) and the commit of the code "
        "it measured; **older than the code** marks a figure whose code has changed since.",
        "",
        "| figure | measured | target | met | measured on | details |",
        "|---|---|---|---|---|---|",
    ]
    for name, sec in sections.items():
        for f in sec["figures"]:
            verdict = {True: "yes", False: "**no**", None: "—"}[f["met"]]
            lines.append(
                f"| {f['name']} | {f['measured']} | {f['target']} | {verdict} | {provenance(name, sec, started)} "
                f"| {f['detail']} |"
            )
    lines.append("")
    for name, sec in sections.items():
        kept = (
            f" Measured {sec['when']} (kept: not rerun in the latest run)."
            if sec.get("when") != started
            else ""
        )
        lines += [
            f"### {name}",
            "",
            f"Target: {TARGETS[name]}.{kept}",
            "",
            _load_line(sec),
            "",
        ]
        if sec.get("error"):
            lines += ["```", sec["error"], "```", ""]
        notes = NOTES.get(name)
        if notes:
            lines += [notes, ""]
    (ROOT / "benchmarks" / "RESULTS.md").write_text("\n".join(lines) + "\n" + STATIC)


NOTES = {}  # per-benchmark explanations, from benchmarks/NOTES.md
STATIC = ""


def _load_notes() -> None:
    """benchmarks/NOTES.md holds the hand-written explanations: '## <name>' sections per benchmark, and a
    final '## More' section appended as is."""
    global STATIC
    path = ROOT / "benchmarks" / "NOTES.md"
    if not path.exists():
        return
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = line[3:].strip()
            NOTES[current] = ""
            continue
        if current:
            NOTES[current] += line + "\n"
    STATIC = "\n## More\n\n" + NOTES.pop("More", "").strip() + "\n" if "More" in NOTES else ""
    for k in NOTES:
        NOTES[k] = NOTES[k].strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--only", default=",".join(ORDER), help=f"comma-separated subset of {', '.join(ORDER)}"
    )
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (train and extract)")
    ap.add_argument("--full-repro", action="store_true", help="measure the full dvc repro again")
    ap.add_argument(
        "--capability",
        default="",
        help="dvc: CPU kernels of the full repro, e.g. avx2 (a lesser CPU)",
    )
    ap.add_argument(
        "--hnsw", action="store_true", help="also build an HNSW index of the 1M database (slow)"
    )
    args = ap.parse_args()
    import sys

    args.argv = sys.argv[1:]
    _load_notes()
    started = time.strftime("%Y-%m-%d %H:%M")
    store = STORE
    sections = (
        json.loads(store.read_text()) if store.exists() else {}
    )  # figures of benchmarks not rerun
    info = machine()
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        before, start = load_average(), time.time()
        print(f"== {name} (load average {before[0]:.2f})", flush=True)
        error = None
        try:
            figures = _bench(name, args)
        except Exception:  # noqa: BLE001 - report it and go on with the other benchmarks
            error = traceback.format_exc()
            figures = [Figure(name, "failed", TARGETS[name], False, error.strip().splitlines()[-1])]
            print(error, flush=True)
        for f in figures:
            print(f.line(), flush=True)
        sections[name] = dict(
            figures=figures_to_json(figures),
            load_before=before,
            load_after=load_average(),
            seconds=time.time() - start,
            error=error,
            when=started,
            machine=info,
            commit=_git("rev-parse", "--short", "HEAD")
            + ("+changes" if _git("status", "--porcelain", "--", *CODE[name]) else ""),
        )
        save_json(store, sections)
    ordered = {n: sections[n] for n in ORDER if n in sections}
    write_results(ordered, info, started, args)
    print(f"wrote {ROOT / 'benchmarks' / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
