"""Running a suite's runs as DVC experiments: `dvc exp run --queue -n <name> -S ...` for each run not in the
store, `dvc queue start -j N`, then waiting (polling `dvc queue status`, less and less often) until none of
them is queued or running. Every second spent here, not in the runs, is counted (Timing)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from vpr.errors import DataError

CORES_PER_RUN = 2  # a training run keeps about two cores busy (torch's threads + its loader worker)
POLL_FIRST_S, POLL_MAX_S = 5.0, 30.0


@dataclass
class Timing:
    """Wall-clock seconds of the runner's own work and of the waits during which the runs ran."""

    own: dict = field(
        default_factory=dict
    )  # phase -> seconds (plan, store, queue, start, poll, table)
    waiting_s: float = 0.0  # the queue working, polls excluded
    waves: list = field(
        default_factory=list
    )  # (unix time the queue was started, the run names waited for)

    def add(self, phase: str, seconds: float) -> None:
        self.own[phase] = self.own.get(phase, 0.0) + seconds

    @property
    def own_s(self) -> float:
        return sum(self.own.values())

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in self.own.items())
        ratio = f" = {100 * self.own_s / self.waiting_s:.1f} % of" if self.waiting_s else " for"
        return f"runner's own time: {self.own_s:.1f} s ({parts}){ratio} the runs' {self.waiting_s:.0f} s"


class timed:
    def __init__(self, timing: Timing, phase: str):
        self.timing, self.phase = timing, phase

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.timing.add(self.phase, time.perf_counter() - self.start)


def default_jobs(cores: int | None = None) -> tuple[int, str]:
    """Parallel runs for `dvc queue start -j`, from the CPU cores, and the sentence saying why."""
    cores = cores or os.cpu_count() or 1
    jobs = max(1, cores // CORES_PER_RUN)
    return jobs, f"{cores} CPU cores, about {CORES_PER_RUN} per training run"


def dvc(repo: str, *args: str, env: dict | None = None) -> str:
    """Output of `dvc <args>` in ``repo``; DataError with the tail of its output when it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})},
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise DataError(f"dvc {' '.join(args[:3])} ... failed: {tail[0]}")
    return proc.stdout


def queue(repo: str, runs: list, failed: list, out=print) -> None:
    """Queue each run (a failed earlier attempt of the same name is removed from the queue's list first)."""
    if failed:
        try:
            dvc(repo, "queue", "remove", *failed)
        except DataError as exc:  # not fatal: queueing the name again says if it is
            out(f"note: {exc}")
    for i, run in enumerate(runs, 1):
        dvc(
            repo,
            "exp",
            "run",
            "--queue",
            "-n",
            run.name,
            *[a for item in run.items for a in ("-S", item)],
        )
        out(f"queued [{i}/{len(runs)}] {run.name}")


def start(repo: str, jobs: int, timing: Timing | None = None, names=()) -> None:
    """`dvc queue start -j N`; with N > 1 each run gets its share of the cores as torch threads."""
    env = None
    if jobs > 1:
        threads = str(max(1, (os.cpu_count() or jobs) // jobs))
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    if timing is not None:
        timing.waves.append((time.time(), list(names)))
    dvc(repo, "queue", "start", "-j", str(jobs), env=env)


def queue_states(repo: str) -> dict:
    """Experiment name -> state (Queued, Running, Success, Failed, ...) of the queue's tasks: what `dvc queue
    status` lists, read in this process (a `dvc` process per poll would cost a second of CPU each time)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(repo) as r:
            entries = r.experiments.celery_queue.status()
    except DvcException as exc:
        raise DataError(f"{repo}: cannot read the DVC queue ({exc})") from None
    states: dict = {}
    for e in entries:  # a name queued again after an earlier attempt: the active task counts
        name = e.get("name") or e["rev"][:7]
        if states.get(name) not in ("Queued", "Running"):
            states[name] = e["status"]
    return states


def workers_alive(repo: str) -> bool:
    """Whether a queue worker of ``repo`` is running: dvc-task records each worker's pid and, once it has
    exited, its return code (.dvc/tmp/exps/celery/dvc-exp-worker-*.json)."""
    import glob
    import json

    for path in glob.glob(
        os.path.join(repo, ".dvc", "tmp", "exps", "celery", "dvc-exp-worker-*.json")
    ):
        try:
            with open(path) as fh:
                info = json.load(fh)
            if info.get("returncode") is None and info.get("pid"):
                os.kill(int(info["pid"]), 0)
                return True
        except (OSError, ValueError):
            continue
    return False


RESTARTS = 3


def wait(
    repo: str,
    names: list,
    timing: Timing,
    out=print,
    poll_first: float = POLL_FIRST_S,
    restart=None,
) -> dict:
    """Until none of ``names`` is queued or running: their last states. Prints each run as it ends. When the
    queue's worker is gone with runs still queued (it can stop on a half-written message of its own broker,
    DVC issue #10428), ``restart()`` starts it again, up to RESTARTS times."""
    pause, reported, started, restarts = poll_first, {}, time.perf_counter(), 0
    polled_before = timing.own.get("poll", 0.0)
    while True:
        t0 = time.perf_counter()
        mine = _states(repo, names)
        stalled = (
            any(s == "Queued" for s in mine.values())
            and not any(s == "Running" for s in mine.values())
            and not workers_alive(repo)
        )
        timing.add("poll", time.perf_counter() - t0)
        for n, s in mine.items():
            if s not in ("Queued", "Running") and n not in reported:
                reported[n] = s
                out(
                    f"[{len(reported)}/{len(names)}] {n}: {s} ({(time.perf_counter() - started) / 60:.1f} min)"
                )
        if all(s not in ("Queued", "Running") for s in mine.values()):
            timing.waiting_s += time.perf_counter() - started - (timing.own["poll"] - polled_before)
            return mine
        if stalled and restart is not None:
            if restarts == RESTARTS:
                raise DataError(
                    f"the DVC queue worker stopped {RESTARTS + 1} times with runs still queued; see "
                    ".dvc/tmp/exps/celery/dvc-exp-worker-1.out, then run the same command again"
                )
            restarts += 1
            out(
                "note: the DVC queue worker stopped with runs still queued (DVC issue #10428); starting it again"
            )
            restart()
        time.sleep(pause)
        pause = min(POLL_MAX_S, pause * 1.5)


def _states(repo: str, names: list) -> dict:
    states = queue_states(repo)
    return {n: states.get(n, "Unknown") for n in names}
