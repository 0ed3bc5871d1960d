"""Running a suite's runs as DVC experiments: `dvc exp run --queue -n <name> -S ...` for each run not in the
store, `dvc queue start -j N`, then waiting until none of them is queued or running (a cheap look every few
seconds: the experiments saved and whether a queue worker runs; the queue's status when none does). Every
second spent here, not in the runs, is counted (Timing)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

from vpr.errors import DataError

CORES_PER_RUN = 2  # a training run keeps about two cores busy (torch's threads + its loader worker)
POLL_S = 5.0  # seconds between two looks at the runs (a git ref listing and a pid check)


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
    """Output of `dvc <args>` in ``repo``; DataError with the tail of its output when it fails. The output goes
    through a temporary file, not a pipe: `dvc queue start` leaves a worker running that would hold a pipe
    open (and this call waiting) until the whole queue is done."""
    import tempfile

    with tempfile.TemporaryFile("w+") as log:
        code = subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=repo,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "DVC_NO_ANALYTICS": "1", **(env or {})},
        ).returncode
        log.seek(0)
        text = log.read()
    if code != 0:
        tail = text.strip().splitlines()[-1:] or ["(no output)"]
        raise DataError(f"dvc {' '.join(args[:3])} ... failed: {tail[0]}")
    return text


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
SETTLE_S = 30.0


def finished(repo: str, names) -> set:
    """Which of ``names`` DVC has saved as experiments of the baseline commit (refs/exps/<sha>/<name>): one
    `git for-each-ref`, cheap enough to ask every few seconds."""
    head = subprocess.run(
        ["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    refs = subprocess.run(
        [
            "git",
            "-C",
            repo,
            "for-each-ref",
            "--format=%(refname)",
            f"refs/exps/{head[:2]}/{head[2:]}/",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    return {r.rsplit("/", 1)[-1] for r in refs} & set(names)


def wait(
    repo: str, names: list, timing: Timing, out=print, poll_s: float = POLL_S, restart=None
) -> dict:
    """Until none of ``names`` is queued or running: their last states. Every ``poll_s``: the experiments saved
    (a git ref each) and whether a queue worker still runs; the queue's own status only once no worker runs.
    When the worker is gone with runs still queued (it can stop on a half-written message of its own broker,
    DVC issue #10428), ``restart()`` starts it again, up to RESTARTS times."""
    reported, started, restarts = {}, time.perf_counter(), 0
    polled_before = timing.own.get("poll", 0.0)
    while True:
        t0 = time.perf_counter()
        done = finished(repo, names)
        mine = {n: "Success" for n in done}
        if len(done) < len(names) and not workers_alive(repo):
            done = finished(repo, names)  # again: a run may have been saved since the first look
            mine = {n: "Success" for n in done}
            states = _states(repo, [n for n in names if n not in done])
            mine.update(
                {n: "Failed" if s == "Success" else s for n, s in states.items()}
            )  # Success, no ref
        else:
            mine.update({n: "Running" for n in names if n not in done})
        timing.add("poll", time.perf_counter() - t0)
        for n in names:
            if mine[n] not in ("Queued", "Running") and n not in reported:
                reported[n] = mine[n]
                out(
                    f"[{len(reported)}/{len(names)}] {n}: {mine[n]} ({(time.perf_counter() - started) / 60:.1f} min)"
                )
        if all(s not in ("Queued", "Running") for s in mine.values()):
            timing.waiting_s += time.perf_counter() - started - (timing.own["poll"] - polled_before)
            _settle(repo, timing)
            return {n: mine[n] for n in names}
        if (
            any(s == "Queued" for s in mine.values())
            and not workers_alive(repo)
            and restart is not None
        ):
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
        time.sleep(poll_s)


def _settle(repo: str, timing: Timing, limit_s: float = SETTLE_S) -> None:
    """After the last run is saved, the worker still removes its temporary workspace (which `dvc exp show`
    would trip over): wait for it to exit, at most ``limit_s`` (it keeps running when other runs are queued)."""
    with timed(timing, "settle"):
        deadline = time.perf_counter() + limit_s
        while workers_alive(repo) and time.perf_counter() < deadline:
            time.sleep(0.5)


def _states(repo: str, names: list) -> dict:
    states = queue_states(repo)
    return {n: states.get(n, "Unknown") for n in names}
