"""Put on PYTHONPATH by the end-to-end pipeline test: a light stage (fetch, build_gt, evaluate, recall_table,
visualize, report) that imports torch fails there, so `dvc repro` proves those stages start without it."""

import os
import sys

LIGHT_STAGES = {
    "fetch.py",
    "build_gt.py",
    "evaluate.py",
    "recall_table.py",
    "visualize.py",
    "report.py",
}


class _ForbidTorchInLightStages:
    def find_spec(self, name, path=None, target=None):
        script = os.path.basename(sys.argv[0]) if sys.argv else ""
        if name.split(".")[0] in ("torch", "torchvision") and script in LIGHT_STAGES:
            raise ImportError(
                f"stages/{script} imported {name}: a light stage must not import torch"
            )
        return None


sys.meta_path.insert(0, _ForbidTorchInLightStages())
