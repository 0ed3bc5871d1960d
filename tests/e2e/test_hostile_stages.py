"""Bad input through the stage scripts, as a user runs them: one line on stderr (``error: ...`` or
``interrupted``), a non-zero exit status, and the folder exactly as it was."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from tests.helpers import ROOT, STAGE_ENV, files_under, one_line, run_unchanged, stage_sandbox
from vpr.config import load_params
from vpr.io import atomic_dir, atomic_file, atomic_path


@pytest.fixture
def box(tmp_path):
    return stage_sandbox(tmp_path / "box", load_params(ROOT / "params.yaml"))


def _run(box, *args, timeout=180):
    """Run ``python <args>`` in the sandbox: (exit status, stderr lines); nothing may change there."""
    proc = run_unchanged(box, *args, timeout=timeout)
    return proc.returncode, proc.stderr.splitlines()


def test_fetch_without_its_argument_shows_the_usage(box):
    status, lines = _run(box, "stages/fetch.py")
    assert status == 2
    assert (
        one_line(lines, "error: ")
        == "error: usage: python stages/fetch.py <dataset> (one of data.fetch: synth)"
    )


def test_fetch_of_a_dataset_not_listed(box):
    status, lines = _run(box, "stages/fetch.py", "tokyo")
    assert status == 2 and "data.fetch: no dataset 'tokyo'" in one_line(lines, "error: ")


@pytest.mark.parametrize("stage", ["extract", "evaluate", "visualize"])
@pytest.mark.parametrize("args", [[], ["nope"]])
def test_set_stages_name_data_test_for_a_missing_or_unknown_set(box, stage, args):
    status, lines = _run(box, f"stages/{stage}.py", *args)
    line = one_line(lines, "error: ")
    assert status == 2 and "data.test" in line and "synth_test" in line, line
    assert f"usage: python stages/{stage}.py <set>" in line


def test_ctrl_c_in_a_stage_prints_interrupted_and_leaves_nothing(box):
    """evaluate@synth_test blocked reading its ground truth (a FIFO nobody writes to: deterministic)."""
    gt = box / "data" / "gt" / "synth_test"
    gt.mkdir(parents=True)
    np.save(gt / "positives_offsets.npy", np.zeros(1, np.int64))
    fifo = gt / "database_paths.npy"
    os.mkfifo(fifo)
    before = files_under(box)
    # Ctrl-C as in a terminal: SIGINT at its default even when the tests run as a background job (a shell
    # starts those with SIGINT ignored, and a child inherits that)
    proc = subprocess.Popen(
        [sys.executable, "stages/evaluate.py", "synth_test"],
        cwd=box,
        env=STAGE_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    writer, deadline = None, time.monotonic() + 120
    while (
        writer is None
    ):  # a non-blocking open for writing succeeds once the stage has it open for reading
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        try:
            writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            time.sleep(0.05)
    try:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        os.close(writer)
    assert proc.returncode == 130, err
    assert err.splitlines() == ["interrupted"]
    assert files_under(box) == before


DISK_FULL = """import sys; sys.path.insert(0, "stages")
from _common import run
def main():
    raise {exc}
run(main)
"""


@pytest.mark.parametrize(
    "exc,line",
    [
        (
            "OSError(28, 'No space left on device', 'x.npy')",
            "error: x.npy: No space left on device (free some space on that disk and re-run)",
        ),
        (
            "OSError('4096 requested and 1024 written')",  # numpy's message for a short write
            "error: a write stopped short (4096 requested and 1024 written): the disk is probably full "
            "(free some space / check permissions)",
        ),
        (
            "PermissionError(13, 'Permission denied', 'metrics/eval')",
            "error: metrics/eval: Permission denied (check permissions)",
        ),
    ],
)
def test_os_errors_are_one_line_naming_the_file(box, exc, line):
    (box / "oserror.py").write_text(DISK_FULL.format(exc=exc))
    status, lines = _run(box, "oserror.py")
    assert status == 2 and one_line(lines, "error: ") == line


def test_a_bug_keeps_its_traceback(box):
    (box / "bug.py").write_text(DISK_FULL.format(exc="ZeroDivisionError('a bug')"))
    status, lines = _run(box, "bug.py")
    assert (
        status == 1 and lines[0].startswith("Traceback") and lines[-1] == "ZeroDivisionError: a bug"
    )


LOADERS = """import sys; sys.path.insert(0, "stages")
from _common import run
ARGS, sys.argv[1:] = sys.argv[1:], []   # this script's own arguments: run() reads a stage's command line
def main():
    import torch
    from torch.utils.data import DataLoader
    paths = ARGS[1:]
    if ARGS[0] == "extract":   # what stages/extract.py runs, with two loader workers
        from vpr.eval.extract import compute_descriptors
        model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        compute_descriptors(model, paths, prep=(48, 64), batch_size=2, num_workers=2)
    else:                          # the training loader: one item = one whole batch, built in a worker
        from vpr.data.loading import PlaceBatchImages
        dataset = PlaceBatchImages(paths, list(range(len(paths))), (48, 64))
        for _ in DataLoader(dataset, batch_size=None, sampler=[(0, 0, tuple(range(len(paths))))], num_workers=2):
            pass
run(main)
"""


def _pictures(folder):
    """Two good JPEGs, one garbled after a valid header, one that is no image at all."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(
            folder / name, quality=90
        )
    data = bytearray((folder / "a.jpg").read_bytes())
    data[len(data) // 2 : -2] = rng.integers(
        0, 256, len(data) // 2 - 2 + len(data) % 2, dtype=np.uint8
    ).tobytes()
    (folder / "garbled.jpg").write_bytes(bytes(data))
    (folder / "text.jpg").write_text("not a picture\n")
    return folder


@pytest.mark.parametrize("loader", ["extract", "training"])
@pytest.mark.parametrize(
    "bad,why",
    [
        ("garbled.jpg", "OSError: broken data stream"),
        ("text.jpg", "UnidentifiedImageError: cannot identify image file"),
    ],
)
def test_an_image_that_does_not_decode_in_a_loader_worker_is_one_line(
    tmp_path, box, loader, bad, why
):
    pictures = _pictures(tmp_path / "pictures")
    (box / "loaders.py").write_text(LOADERS)
    paths = [str(pictures / n) for n in ("a.jpg", "b.jpg", bad, "a.jpg")]
    status, lines = _run(box, "loaders.py", loader, *paths)
    line = one_line(lines, "error: ")
    assert status == 2 and line.startswith(f"error: {pictures / bad}: does not decode ({why}"), line
    assert line.endswith("; replace it, or delete it and rebuild data/gt (stage build_gt)")


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("kind", ["dir", "file", "path"])
def test_an_interrupted_atomic_output_leaves_the_previous_one_and_no_temporary(tmp_path, kind):
    out = tmp_path / "out"
    out.write_text("previous")
    writer = {"dir": atomic_dir, "file": atomic_file, "path": atomic_path}[kind]
    with pytest.raises(KeyboardInterrupt):
        with writer(out) as tmp:
            if kind == "file":
                tmp.write("half")
            else:
                with open(os.path.join(tmp, "part.npy") if kind == "dir" else tmp, "w") as fh:
                    fh.write("half")
            _interrupt()
    assert os.listdir(tmp_path) == ["out"] and out.read_text() == "previous"


def test_a_failed_swap_of_an_output_folder_keeps_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "features"
    out.mkdir()
    (out / "database.npy").write_text("previous")
    real = os.replace
    monkeypatch.setattr(
        os,
        "replace",
        lambda a, b: _interrupt() if str(b) == str(out) and "old" not in str(a) else real(a, b),
    )
    with pytest.raises(KeyboardInterrupt):
        with atomic_dir(out) as tmp:
            open(os.path.join(tmp, "database.npy"), "w").close()
    assert os.listdir(tmp_path) == ["features"] and (out / "database.npy").read_text() == "previous"
