"""Ground truth as plain ``.npy`` arrays (never pickled).

Evaluation set folder ``<set>/{database,queries}`` ->
    database_paths.npy, queries_paths.npy   sorted paths (str arrays)
    database_utm.npy, queries_utm.npy       (n, 2) float64 UTM east, north
    positives_offsets.npy, positives_indices.npy
                                            CSR: database indices within ``radius_m`` of query q are
                                            indices[offsets[q]:offsets[q + 1]], ascending
    queries_night.npy                       bool per query (night subset)
Training folder ``train/<city>/`` (note field = ``placeID_City``) ->
    paths.npy, utm.npy, place_of_image.npy  per image (only places with >= min_images)
    place_names.npy, place_city.npy         per place
    place_offsets.npy, place_images.npy     CSR: images of place p
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from vpr.data.filenames import FETCH_MARKER, IMAGE_EXTENSIONS, parse_name, utm_of
from vpr.errors import DataError
from vpr.io import atomic_dir, atomic_path


def _linked_from(folder: str) -> str | None:
    """The user's real folder when ``folder`` lies in a ``path`` dataset (linked, not copied), else None."""
    d = os.path.abspath(folder)
    while not os.path.isfile(os.path.join(d, FETCH_MARKER)):
        if os.path.dirname(d) == d:
            return None
        d = os.path.dirname(d)
    try:
        with open(os.path.join(d, FETCH_MARKER)) as fh:
            source = json.load(fh).get("source")
    except (OSError, ValueError, AttributeError):
        return None
    return os.path.realpath(folder) if source == "path" else None


def _folder_error(folder: str, problem: str, fix: str) -> DataError:
    """``problem`` of ``folder``; in a ``path`` dataset it names the user's folder (fetching again changes nothing)."""
    real = _linked_from(folder)
    if real:
        return DataError(
            f"{real}: {problem} (linked as {folder}); check that folder or the dataset's path in "
            f"params.yaml: fetching again links the same folder"
        )
    return DataError(f"{folder}: {problem}; {fix}")


def list_images(folder: str | os.PathLike) -> list[str]:
    """Sorted image paths under ``folder`` (recursive), as the reference protocol sorts them."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise _folder_error(
            folder, "folder not found", "run the fetch stage or fix the dataset path in params.yaml"
        )
    paths = []
    for dirpath, _, files in os.walk(folder):
        paths += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not paths:
        raise _folder_error(
            folder,
            f"no {'/'.join(IMAGE_EXTENSIONS)} images found",
            "check that the dataset was fetched and extracted",
        )
    return sorted(paths)


@dataclass
class Positives:
    """Compressed-sparse-row list of database indices per query."""

    offsets: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, q: int) -> np.ndarray:
        return self.indices[self.offsets[q] : self.offsets[q + 1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, queries) -> Positives:
        """Positives of the selected queries only, in the given order."""
        return Positives.from_lists([self[int(q)] for q in queries])

    @classmethod
    def from_lists(cls, lists) -> Positives:
        counts = np.array([len(x) for x in lists], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        indices = (
            np.concatenate([np.sort(np.asarray(x, dtype=np.int64)) for x in lists])
            if len(lists)
            else np.zeros(0, np.int64)
        )
        return cls(offsets, indices.astype(np.int64))


def positives_within(
    database_utm: np.ndarray, queries_utm: np.ndarray, radius_m: float
) -> Positives:
    """Database images within ``radius_m`` (UTM metres) of each query (radius search)."""
    if len(database_utm) == 0:
        return Positives.from_lists([[] for _ in range(len(queries_utm))])
    from scipy.spatial import (
        cKDTree,  # here: a second of imports the stages that only load GT never pay
    )

    tree = cKDTree(database_utm)
    return Positives.from_lists(tree.query_ball_point(queries_utm, r=radius_m))


@dataclass
class EvalSet:
    database_paths: np.ndarray
    queries_paths: np.ndarray
    database_utm: np.ndarray
    queries_utm: np.ndarray
    positives: Positives
    queries_night: np.ndarray

    @property
    def num_database(self) -> int:
        return len(self.database_paths)

    @property
    def num_queries(self) -> int:
        return len(self.queries_paths)

    @property
    def has_coordinates(self) -> bool:
        """False for a query list without coordinates (UTM stored as NaN): no recall, predictions only."""
        return bool(np.isfinite(self.queries_utm).all())


def save_eval_set(gt: EvalSet, out_dir: str | os.PathLike, **meta) -> None:
    with atomic_dir(out_dir) as tmp:
        for name in (
            "database_paths",
            "queries_paths",
            "database_utm",
            "queries_utm",
            "queries_night",
        ):
            np.save(os.path.join(tmp, f"{name}.npy"), getattr(gt, name))
        np.save(os.path.join(tmp, "positives_offsets.npy"), gt.positives.offsets)
        np.save(os.path.join(tmp, "positives_indices.npy"), gt.positives.indices)
        counts = gt.positives.counts
        info = dict(
            num_database=gt.num_database,
            num_queries=gt.num_queries,
            queries_without_positive=int((counts == 0).sum()),
            mean_positives=float(counts.mean()) if len(counts) else 0.0,
            night_queries=int(gt.queries_night.sum()),
            queries_have_coordinates=gt.has_coordinates,
            **meta,
        )
        with open(os.path.join(tmp, "info.json"), "w") as fh:
            json.dump(info, fh, indent=2)


def load_info(gt_dir: str | os.PathLike) -> dict:
    """The ``info.json`` written next to a set's ground truth (empty if absent)."""
    path = os.path.join(os.fspath(gt_dir), "info.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def load_eval_set(gt_dir: str | os.PathLike, mmap: bool = False) -> EvalSet:
    """``mmap``: memory-map the arrays (large databases: paths and positions are read only where used)."""
    gt_dir = os.fspath(gt_dir)
    if not os.path.isfile(os.path.join(gt_dir, "positives_offsets.npy")):
        raise DataError(f"{gt_dir}: no ground truth here; run the build_gt stage first")
    ld = lambda name: np.load(
        os.path.join(gt_dir, f"{name}.npy"),
        allow_pickle=False,  # noqa: E731
        mmap_mode="r" if mmap else None,
    )
    return EvalSet(
        ld("database_paths"),
        ld("queries_paths"),
        ld("database_utm"),
        ld("queries_utm"),
        Positives(ld("positives_offsets"), ld("positives_indices")),
        ld("queries_night"),
    )


@dataclass
class TrainSet:
    paths: np.ndarray
    utm: np.ndarray
    place_of_image: np.ndarray
    place_names: np.ndarray
    place_city: np.ndarray
    place_offsets: np.ndarray
    place_images: np.ndarray

    @property
    def num_places(self) -> int:
        return len(self.place_names)

    def images_of(self, place: int) -> np.ndarray:
        return self.place_images[self.place_offsets[place] : self.place_offsets[place + 1]]

    @property
    def place_sizes(self) -> np.ndarray:
        return np.diff(self.place_offsets)


def build_train_set(train_dir: str | os.PathLike, min_images: int = 4) -> TrainSet:
    """Group images by the ``note`` field (``placeID_City``); keep places with >= ``min_images``."""
    paths = list_images(train_dir)
    notes = []
    for p in paths:
        note = parse_name(p).note
        if "_" not in note:
            raise DataError(
                f"{p}: training image note field '{note}' is not 'placeID_City'; "
                f"training images must be named as in GSV-XS (e.g. ...@284_Rome@.jpg)"
            )
        notes.append(note)
    return train_set_from_places(paths, utm_of(paths), notes, min_images, where=train_dir)


def train_set_from_places(
    paths, utm, place_names, min_images: int = 4, where: str = "training set"
) -> TrainSet:
    """Group images by place name (``placeID_City``); keep places with >= ``min_images`` images."""
    utm = np.asarray(utm, dtype=np.float64)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(place_names):
        groups.setdefault(name, []).append(i)
    names = sorted(n for n, idx in groups.items() if len(idx) >= min_images)
    if not names:
        raise DataError(
            f"{where}: no place has >= {min_images} images (gt.train_min_images); "
            f"lower it or check the training folder"
        )
    keep = [i for n in names for i in groups[n]]
    remap = {old: new for new, old in enumerate(keep)}
    place_of_image = np.empty(len(keep), dtype=np.int64)
    lists = []
    for pid, n in enumerate(names):
        idx = [remap[i] for i in groups[n]]
        place_of_image[idx] = pid
        lists.append(idx)
    csr = Positives.from_lists(lists)
    return TrainSet(
        np.array([str(paths[i]) for i in keep]),
        utm[keep],
        place_of_image,
        np.array(names),
        np.array([n.split("_", 1)[1] for n in names]),
        csr.offsets,
        csr.indices,
    )


def save_train_set(ts: TrainSet, out_dir: str | os.PathLike, **meta) -> None:
    with atomic_dir(out_dir) as tmp:
        for name in (
            "paths",
            "utm",
            "place_of_image",
            "place_names",
            "place_city",
            "place_offsets",
            "place_images",
        ):
            np.save(os.path.join(tmp, f"{name}.npy"), getattr(ts, name))
        sizes = ts.place_sizes
        info = dict(
            num_images=len(ts.paths),
            num_places=ts.num_places,
            cities=sorted(set(ts.place_city.tolist())),
            min_place_size=int(sizes.min()),
            max_place_size=int(sizes.max()),
            **meta,
        )
        with open(os.path.join(tmp, "info.json"), "w") as fh:
            json.dump(info, fh, indent=2)


def load_train_set(gt_dir: str | os.PathLike) -> TrainSet:
    gt_dir = os.fspath(gt_dir)
    if not os.path.isfile(os.path.join(gt_dir, "place_offsets.npy")):
        raise DataError(f"{gt_dir}: no training index here; run the build_gt stage first")
    ld = lambda name: np.load(os.path.join(gt_dir, f"{name}.npy"), allow_pickle=False)  # noqa: E731
    return TrainSet(
        *(
            ld(n)
            for n in (
                "paths",
                "utm",
                "place_of_image",
                "place_names",
                "place_city",
                "place_offsets",
                "place_images",
            )
        )
    )


def save_image_list(paths, out_path: str | os.PathLike) -> None:
    """A plain list of image paths (e.g. unlabeled target-domain images) as a .npy string array."""
    with atomic_path(out_path) as tmp:
        np.save(tmp, np.array([str(p) for p in paths]))


def load_image_list(path: str | os.PathLike) -> np.ndarray:
    if not os.path.isfile(path):
        raise DataError(f"{path}: image list not found; run the build_gt stage first")
    return np.load(path, allow_pickle=False)


@dataclass
class TrainingData:
    """Everything the train stage reads from data/gt/train: places, and the optional mining and target sets."""

    places: TrainSet
    mining: EvalSet | None = None
    target: np.ndarray | None = None


def load_training_data(gt_dir: str | os.PathLike = "data/gt/train") -> TrainingData:
    gt_dir = os.fspath(gt_dir)
    mining_dir = os.path.join(gt_dir, "mining")
    target = os.path.join(gt_dir, "target_paths.npy")
    return TrainingData(
        load_train_set(gt_dir),
        load_eval_set(mining_dir) if os.path.isdir(mining_dir) else None,
        load_image_list(target) if os.path.isfile(target) else None,
    )
