"""What a training method is given (:class:`Context`) and gives back (:class:`Method`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vpr.data.groundtruth import TrainingData
from vpr.data.images import load_image


class TrainImages(Dataset):
    """Training images as dict samples: ``images`` (+ ``views``, a second augmented view, when asked for
    by the self-supervised loss) and ``labels`` when given."""

    def __init__(self, paths, labels, transform, view_transform=None):
        self.paths = [str(p) for p in paths]
        self.labels = (
            None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        )
        self.transform, self.view_transform = transform, view_transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        image = load_image(self.paths[i])
        sample = {"images": self.transform(image)}
        if self.view_transform is not None:
            sample["views"] = self.view_transform(image)
        if self.labels is not None:
            sample["labels"] = self.labels[i]
        return sample


@dataclass
class Context:
    """What a method builder needs: the config, the data, the model and how to load images."""

    cfg: object
    data: TrainingData
    model: torch.nn.Module
    device: str
    transform: Callable  # the training transform (resize + augment + normalise)
    view_transform: Callable | None = None  # second view for the self-supervised loss, if enabled
    rank: int = 0  # DDP: this process builds its share of every global batch
    world: int = 1

    def dataset(self, paths, labels=None) -> TrainImages:
        return TrainImages(paths, labels, self.transform, self.view_transform)

    def loader(self, dataset, batch_sampler, epoch: int) -> DataLoader:
        """A DataLoader whose worker randomness derives from (seed, epoch): resumable, reproducible."""
        t = self.cfg.train
        generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=t.num_workers,
            generator=generator,
            pin_memory=self.device == "cuda",
        )


@dataclass
class Method:
    objective: torch.nn.Module
    batches: Callable[[int], Iterable[dict]]
    steps_per_epoch: int
    sampler: object = None  # saved in checkpoints if it has state_dict()
    param_groups: list = field(
        default_factory=list
    )  # extra optimizer groups, e.g. classifier heads
