"""Shared by the benchmark scripts: the figure record, repeated timing, the machine description, cached data.

Benchmarks are not tests: each measures a ratio within one run (numerator and denominator in the same
process, interleaved, repeated; medians, with the spread), prints ``name: measured (target)``, and
``run.py`` keeps the latest figures in RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's library, installed or not
CACHE = ROOT / "benchmarks" / ".cache"  # generated data, reused between runs (git-ignored)
os.environ.setdefault("TQDM_DISABLE", "1")


@dataclass
class Figure:
    name: str
    measured: str  # formatted value
    target: str  # e.g. "<= 1.15"
    met: bool | None  # None: no target, or not measurable here
    detail: str = ""
    raw: dict = field(default_factory=dict)

    def line(self) -> str:
        verdict = {True: "met", False: "NOT met", None: "no target"}[self.met]
        return f"{self.name}: {self.measured} ({self.target}) [{verdict}]" + (
            f" -- {self.detail}" if self.detail else ""
        )


def spread(values) -> dict:
    values = list(values)
    return dict(median=statistics.median(values), min=min(values), max=max(values), n=len(values))


def fmt_spread(s: dict, digits: int = 3) -> str:
    return f"median of {s['n']}, range {s['min']:.{digits}f}-{s['max']:.{digits}f}"


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def machine() -> dict:
    """What the figures were measured on."""
    import faiss
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return dict(
        cpu=cpu,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cores=os.cpu_count(),
        memory_gib=mem,
        gpu=gpu,
        os=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        faiss=faiss.__version__,
        numpy=numpy.__version__,
        torch_threads=torch.get_num_threads(),
    )


def synthetic_city(name: str, **spec) -> Path:
    """A generated city under the cache (same generator as the pipeline), made once."""
    from vpr.data.synthetic.generate import SyntheticSpec, generate

    root = CACHE / name
    marker = root / ".spec.json"
    wanted = json.dumps(spec, sort_keys=True)
    if not (marker.exists() and marker.read_text() == wanted):
        generate(root, SyntheticSpec.of(spec), workers=os.cpu_count() or 1)
        marker.write_text(wanted)
    return root


def upscaled_copy(src: Path, name: str, factor: int) -> Path:
    """The city's training images re-encoded ``factor`` times larger (like real photos, larger than the
    training size): what decoding at the right size is for."""
    from PIL import Image

    dst = CACHE / name
    marker = dst / ".done"
    if not marker.exists():
        for path in sorted((src / "train").rglob("*.jpg")):
            out = dst / "train" / path.relative_to(src / "train")
            out.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as img:
                img.resize((img.width * factor, img.height * factor), Image.BICUBIC).save(
                    out, quality=90
                )
        marker.write_text("ok")
    return dst


def cambridge_photos() -> Path | None:
    """The shared copy's folder of real 320 x 320 street-view JPEGs (None where there is none)."""
    from vpr.data.cambridge import local_copy

    source = local_copy(str(ROOT))
    return None if source is None else Path(source) / "data" / "images"


def cambridge_converted() -> Path | None:
    """The shared copy converted once into the course layout under the cache (train/Cambridge, val, test)."""
    from vpr.data.cambridge import convert, local_copy

    source = local_copy(str(ROOT))
    if source is None:
        return None
    target = CACHE / "cambridge_sv"
    if not (target / "train").is_dir():
        convert(source, str(target), verify_all=False)
    return target


def mixed_shape_photos(limit: int) -> Path | None:
    """``limit`` real photos cropped to phone shapes (4:3, 3:4, 16:9, 3:2, 1:1) and a few odd sizes, made once:
    a set of mixed sizes and aspect ratios from real street-view pixels."""
    from PIL import Image

    photos = cambridge_photos()
    if photos is None:
        return None
    shapes = [
        (320, 240),
        (240, 320),
        (320, 180),
        (320, 213),
        (320, 320),
        (301, 227),
        (227, 301),
        (319, 179),
    ]
    dst = CACHE / f"cambridge_mixed_{limit}"
    if not (dst / ".done").exists():
        dst.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(sorted(photos.glob("*.jpg"))[:limit]):
            w, h = shapes[i % len(shapes)]
            with Image.open(path) as img:
                left, top = (img.width - w) // 2, (img.height - h) // 2
                img.crop((left, top, left + w, top + h)).save(dst / f"{i:05d}.jpg", quality=92)
        (dst / ".done").write_text("ok")
    return dst


def shipped_params() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "params.yaml").read_text())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def save_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))


def figures_to_json(figures) -> list[dict]:
    return [asdict(f) for f in figures]


def standalone(doc: str, run) -> None:
    """A benchmark script's own command line: one option per parameter of ``run`` (a bool becomes a flag),
    then its figures printed as ``name: measured (target)``."""
    import argparse
    import inspect

    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    for name, p in inspect.signature(run).parameters.items():
        option = "--" + name.replace("_", "-")
        if isinstance(p.default, bool):
            ap.add_argument(option, action="store_true")
        else:
            ap.add_argument(option, default=p.default)
    for f in run(**vars(ap.parse_args())):
        print(f.line(), flush=True)
