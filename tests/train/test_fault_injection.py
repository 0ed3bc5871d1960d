"""A full disk while a checkpoint is written: the previous best.pt/last.pt stay loadable and unchanged, no
temporary file is left, the error says what happened, and a rerun after freeing space resumes to the result of
an uninterrupted run. (Kills at random points of training: tests/e2e/test_resume.py.)"""

import errno
import io
import itertools
import os
import subprocess
import sys

import pytest
import torch

from tests.helpers import ROOT, one_batch_training
from vpr.errors import TrainingError
from vpr.train.checkpoint import save_checkpoint
from vpr.train.loop import LoopConfig, fit


def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fit(directory, resume=None):
    """Three epochs of a small model (one batch each): (history without times, model). Validation scores rise
    every epoch, so every epoch writes best.pt, then last.pt."""
    scores = itertools.count(0 if resume is None else resume["epoch"] + 1)
    training = one_batch_training("multisimilarity", 1)
    result = fit(
        training,
        LoopConfig(epochs=3, checkpoint_dir=str(directory), seed=5),
        lambda m: {"R@1": float(next(scores))},
        resume=resume,
    )
    return repr(
        [{k: v for k, v in row.items() if k != "seconds"} for row in result.history]
    ), training.model


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("uninterrupted"))


class _FullDisk:
    """Patches torch.save so that writing ``target`` at ``epoch`` fails with ENOSPC, either half-way through the
    bytes (``when="write"``) or at the fsync that follows a complete write (``when="fsync"``, as network and
    delayed-allocation filesystems report it); records the checkpoint folder just before."""

    def __init__(self, monkeypatch, folder, target, epoch, when):
        self.folder, self.target, self.epoch, self.when = folder, target, epoch, when
        self.before, self.armed, self.save, self.fsync = None, False, torch.save, os.fsync
        monkeypatch.setattr(torch, "save", self._save)
        monkeypatch.setattr(os, "fsync", self._fsync)

    def _save(self, obj, f, *args, **kwargs):
        name = os.path.basename(getattr(f, "name", str(f)))
        if not (name.startswith(f".{self.target[:-3]}.") and obj.get("epoch") == self.epoch):
            return self.save(obj, f, *args, **kwargs)
        self.before = {
            p.name: p.read_bytes() for p in self.folder.iterdir() if p.name[0] != "."
        }  # not tmp
        data = io.BytesIO()
        self.save(obj, data, *args, **kwargs)
        if self.when == "write":
            f.write(data.getvalue()[: len(data.getvalue()) // 2])
            raise _enospc()
        f.write(data.getvalue())
        self.armed = True

    def _fsync(self, fd):
        if self.armed:
            self.armed = False
            raise _enospc()
        return self.fsync(fd)


@pytest.mark.parametrize(
    "target,when", [("best.pt", "write"), ("last.pt", "write"), ("last.pt", "fsync")]
)
def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoints(
    tmp_path, monkeypatch, uninterrupted, target, when
):
    disk = _FullDisk(monkeypatch, tmp_path / "b", target, epoch=2, when=when)
    with pytest.raises(
        TrainingError,
        match=rf"{target}: No space left on device .* the previous one, if any, is kept",
    ):
        _fit(tmp_path / "b")
    assert disk.before is not None and not disk.armed
    after = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    assert after == disk.before  # same files, same bytes: no temporary file left behind
    expected = {"best.pt": 1, "last.pt": 1} if target == "best.pt" else {"best.pt": 2, "last.pt": 1}
    for name, epoch in expected.items():  # last.pt is written after best.pt
        assert torch.load(tmp_path / "b" / name, weights_only=True)["epoch"] == epoch

    monkeypatch.undo()  # space freed: the rerun resumes from last.pt
    history, model = _fit(
        tmp_path / "b", resume=torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    )
    assert history == uninterrupted[0]  # repr: exact floats, and nan equals nan
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), uninterrupted[1].state_dict().values())
    )
    assert sorted(os.listdir(tmp_path / "b")) == ["best.pt", "last.pt"]


def test_a_real_write_error_from_the_kernel_keeps_the_previous_checkpoint(tmp_path):
    """No mock: a file-size limit makes the kernel refuse the write part-way (EFBIG, as a full disk would)."""
    small = {"model": {"w": torch.zeros(4)}, "epoch": 1}
    save_checkpoint(tmp_path / "last.pt", **small)
    before = (tmp_path / "last.pt").read_bytes()
    code = (
        "import resource, signal, sys, torch; from vpr.train.checkpoint import save_checkpoint\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))\n"
        "save_checkpoint(sys.argv[1], model={'w': torch.ones(1_000_000)}, epoch=2)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "last.pt")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=120,
    )
    assert proc.returncode != 0 and "File too large while saving the checkpoint" in proc.stderr, (
        proc.stderr
    )
    assert (tmp_path / "last.pt").read_bytes() == before and os.listdir(tmp_path) == ["last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_a_rerun_sweeps_temporary_files_a_killed_writer_left(tmp_path):
    (tmp_path / ".last.k1ll3d.pt").write_bytes(b"half a checkpoint")
    (tmp_path / ".best.k1ll3d.pt").write_bytes(b"half a checkpoint")
    save_checkpoint(tmp_path / "last.pt", epoch=1)
    assert sorted(os.listdir(tmp_path)) == [".best.k1ll3d.pt", "last.pt"]  # only its own leftovers
