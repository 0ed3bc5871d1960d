"""python -m vpr.suites list | run <suite> | table <suite>: see vpr.suites."""

from __future__ import annotations

import argparse
import os
import sys

from vpr.errors import VPRError
from vpr.suites import plan as P
from vpr.suites import runner as R
from vpr.suites import spec as S
from vpr.suites import store as St


def _seeds(args, suite) -> list[int]:
    return list(range(args.seeds if args.seeds else suite.seeds))


def _shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    k, _, m = text.partition("/")
    if not (k.isdigit() and m.isdigit() and 1 <= int(k) <= int(m)):
        raise VPRError(
            f"--shard {text}: expected K/M with 1 <= K <= M, e.g. 1/2 (this machine runs seeds s with "
            "s % M == K - 1)"
        )
    return int(k), int(m)


def make(args, timing: R.Timing):
    """(definitions, plan) of the suite the arguments name."""
    with R.timed(timing, "plan"):
        defs = S.load(args.file)
        suite = defs.suite(args.suite)
        profile = args.data or suite.data
        if profile not in defs.profiles:
            raise VPRError(
                f"--data {profile}: no profile '{profile}' in {defs.path} (profiles: "
                f"{', '.join(defs.profiles)})"
            )
        plan = P.make_plan(
            defs, suite, profile, _seeds(args, suite), St.head_params_text(args.repo), args.repo
        )
    return defs, plan


def estimate(defs, plan, runs: list, jobs: int) -> str:
    minutes = defs.profiles[plan.profile].minutes
    if minutes is None:
        return f"{len(runs)} runs (minutes per run on {plan.profile}: not measured)"
    total = sum(r.cost for r in runs) * minutes
    return (
        f"{len(runs)} runs, about {minutes:g} min per baseline run on 2 CPU cores ({plan.profile}), "
        f"about {total / jobs:.0f} min in all at -j {jobs}"
    )


def describe(defs, plan, status=None, jobs: int = 1, why: str = "") -> list[str]:
    """The dry-run listing: what every run gets, then each run's name, its own overrides and where it stands."""
    from vpr.suites.table import changes, shown

    s = plan.suite
    extra = ", ".join(f"{k}={shown(v)}" for k, v in plan.extra.items()) or "nothing"
    lines = [
        f"suite {s.name} on {plan.profile}: {s.question}" + (f" ({s.note})" if s.note else ""),
        f"every run: the committed params.yaml + data profile {plan.profile} + {extra}",
        f"baseline: {s.baseline}; seeds: {', '.join(map(str, plan.seeds))}; "
        f"{len(plan.runs)} runs = {len({r.variant for r in plan.runs})} variants x {len(plan.seeds)} seeds",
        f"to run: {estimate(defs, plan, status.todo if status else plan.runs, jobs)} "
        f"(dvc queue start -j {jobs}: {why})",
    ]
    for name, reason in plan.skipped.items():
        lines.append(f"  (skipped) {name}: {reason}")
    width = max(len(r.name) for r in plan.runs)
    for r in plan.runs:
        where = ""
        if status is not None:
            where = (
                f"  [in the store: {status.done[r.name].name}]"
                if r.name in status.done
                else f"  [{status.waiting[r.name].lower()}]"
                if r.name in status.waiting
                else "  [to run]"
            )
        after = f"  (after {', '.join(s.variant(r.variant).after)})" if r.wave else ""
        lines.append(
            f"  {r.name:<{width}}  {changes(plan, r.variant)}, seed={r.seed}{after}{where}"
        )
    return lines


def cmd_list(args) -> int:
    defs = S.load(args.file)
    for s in defs.suites.values():
        print(
            f"{s.name:12} {len(s.variants):2} variants x {s.seeds} seeds on {s.data}: {s.question}"
        )
    print(
        "profiles: "
        + "; ".join(
            f"{p.name} ({p.minutes:g} min per run)" if p.minutes else f"{p.name} (not timed)"
            for p in defs.profiles.values()
        )
    )
    return 0


def _store_status(args, plan, timing):
    with R.timed(timing, "store"):
        return St.match(plan, St.read(args.repo, args.all_commits))


def cmd_run(args, timing: R.Timing | None = None) -> int:
    timing = timing if timing is not None else R.Timing()
    defs, plan = make(args, timing)
    jobs, why = (args.jobs, "as asked") if args.jobs else R.default_jobs()
    if args.dry_run:
        try:
            status = _store_status(args, plan, timing)
        except VPRError as exc:
            status = None
            print(f"(the experiment store was not read: {exc})")
        print("\n".join(describe(defs, plan, status, jobs, why)))
        return 0
    for line in St.check_workspace(args.repo):
        print(line, file=sys.stderr)
    status = _store_status(args, plan, timing)
    if status.conflicts:
        raise St.conflict_error(status.conflicts)
    shard = _shard(args.shard)
    mine = [r for r in status.todo if shard is None or r.seed % shard[1] == shard[0] - 1]
    print(
        f"suite {plan.suite.name} on {plan.profile}: {len(plan.runs)} runs; {len(status.done)} in the store, "
        f"{len(status.waiting)} already queued, {len(mine)} to run here"
        + (f" (shard {args.shard}: seeds s % {shard[1]} == {shard[0] - 1})" if shard else "")
    )
    print(f"{estimate(defs, plan, mine, jobs)}; dvc queue start -j {jobs} ({why})")
    try:
        _run_waves(args, plan, status, mine, jobs, timing)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the queue keeps running (dvc queue status; dvc queue kill <name> to stop one); "
            "the same command resumes: runs in the store are not rerun, queued ones not queued again",
            file=sys.stderr,
        )
        return 130
    code = _table(args, defs, plan, timing)
    print(timing.line())
    return code


def _run_waves(args, plan, status, mine: list, jobs: int, timing) -> None:
    """Queue, start and wait, wave by wave (a variant with _after waits for the experiments it reads)."""
    waves = sorted({r.wave for r in plan.runs})
    for wave in waves:
        todo = [r for r in mine if r.wave == wave]
        names = [r.name for r in todo] + [n for n in status.waiting if plan_wave(plan, n) == wave]
        if todo:
            with R.timed(timing, "queue"):
                R.queue(args.repo, todo, [n for n in status.failed if n in {r.name for r in todo}])
        if names:
            with R.timed(timing, "start"):
                R.start(args.repo, jobs, timing, names)
            states = R.wait(args.repo, names, timing, restart=lambda: R.start(args.repo, jobs))
            failed = sorted(n for n, s in states.items() if s not in ("Success", "Unknown"))
            if failed:
                print(
                    f"warning: {len(failed)} runs did not succeed ({', '.join(failed)}); `dvc queue logs <name>` "
                    "says why; rerunning the command queues them again",
                    file=sys.stderr,
                )


def plan_wave(plan, name: str) -> int:
    return next((r.wave for r in plan.runs if r.name == name), 0)


def _table(args, defs, plan, timing) -> int:
    from vpr.suites import render, table

    status = _store_status(args, plan, timing)
    with R.timed(timing, "table"):
        t = table.build(
            plan,
            status,
            args.repo,
            args.resamples,
            defs.profiles[plan.profile],
            P.budget_of(defs, plan.suite, plan.profile),
        )
        out = args.out or os.path.join(
            args.repo, "reports", "suites", f"{plan.suite.name}-{plan.profile}"
        )
        written = render.write(t, out)
    print(render.markdown(t))
    print("written: " + ", ".join(written))
    return 0


def cmd_table(args) -> int:
    timing = R.Timing()
    defs, plan = make(args, timing)
    return _table(args, defs, plan, timing)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m vpr.suites",
        description=(
            "Research suites: a named grid of DVC experiments (variants x seeds) and its table with the noise."
        ),
    )
    ap.add_argument("--file", help="suite definitions (default: src/vpr/suites/definitions.yaml)")
    ap.add_argument("--repo", default=".", help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the suites and the question each answers")
    for name, what in (
        ("run", "queue the runs not in the experiment store, run them, write the table"),
        ("table", "write the table from the experiment store (nothing is run)"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("suite")
        p.add_argument("--seeds", type=int, help="seeds 0..N-1 (default: the suite's)")
        p.add_argument("--data", help="data profile (default: the suite's; e.g. synth, cambridge)")
        p.add_argument(
            "--out",
            help="folder of table.md, table.tex, table.json, index.html "
            "(default: reports/suites/<suite>-<profile>)",
        )
        p.add_argument(
            "--resamples", type=int, default=5000, help="bootstrap resamples (default 5000)"
        )
        p.add_argument(
            "--all-commits", action="store_true", help="runs of earlier baseline commits count too"
        )
        if name == "run":
            p.add_argument(
                "--dry-run",
                action="store_true",
                help="list the runs (names, overrides), run nothing",
            )
            p.add_argument("--jobs", type=int, help="parallel runs (default: from the CPU cores)")
            p.add_argument(
                "--shard", help="K/M: run only seeds s with s %% M == K-1 (one of M machines)"
            )
    return ap.parse_args(argv)


def main(argv=None, timing: R.Timing | None = None) -> int:
    """The command line; ``timing`` (run): filled with the runner's own seconds (benchmarks/bench_suites.py)."""
    args = parse_args(argv)
    if getattr(args, "seeds", None) is not None and args.seeds < 1:
        print(f"error: --seeds {args.seeds}: expected 1 or more", file=sys.stderr)
        return 2
    try:
        if args.command == "run":
            return cmd_run(args, timing)
        return {"list": cmd_list, "table": cmd_table}[args.command](args)
    except VPRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
