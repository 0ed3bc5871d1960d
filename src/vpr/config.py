"""params.yaml -> validated, typed sections. Every problem is reported before any work starts.

Layout of params.yaml:
  * top-level choices (``backbone``, ``aggregator``, ``loss``, ``miner``, ``optimizer``, ``scheduler``)
    are plain names, so ``dvc exp run -S loss=circle`` works;
  * each choice's settings live in its plural section (``losses: {circle: {m: 0.4}}``), read from the
    registry builder's signature;
  * the other sections (``train``, ``extract``, ...) are dataclasses below: their fields are the
    allowed keys, their defaults the documented defaults.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from vpr.data.sources import SOURCES  # noqa: F401  (the fetch sources, checked by sources.check_spec)
from vpr.data.synthetic.generate import SyntheticSpec
from vpr.errors import ConfigError
from vpr.registry import Registry, check_type, require

CHOICES = ("backbone", "aggregator", "loss", "miner", "optimizer", "scheduler", "sampler")


def _registries() -> dict[str, Registry]:
    # Imported lazily: these pull in torch, which the params check itself does not need first.
    from vpr.data.samplers import SAMPLERS
    from vpr.models.aggregators import AGGREGATORS
    from vpr.models.backbones import BACKBONES
    from vpr.train.losses import LOSSES, MINERS
    from vpr.train.optim import OPTIMIZERS, SCHEDULERS
    return dict(backbone=BACKBONES, aggregator=AGGREGATORS, loss=LOSSES, miner=MINERS, optimizer=OPTIMIZERS,
                scheduler=SCHEDULERS, sampler=SAMPLERS)


def _size(key: str, value) -> tuple[int, int] | None:
    if value is None:
        return None
    require(isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v >= 16 for v in value),
            key, f"must be [height, width] in pixels (each >= 16), got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class DataSection:
    """Which folders (relative to data/raw) play which role."""
    train: str = "synth/train"
    val: str = "synth/val"
    test: dict = field(default_factory=lambda: {"synth_test": "synth/test"})
    fetch: tuple = ("synth",)         # datasets fetched into data/raw/<name> (one fetch@<name> stage each)
    night: dict = field(default_factory=dict)   # eval set -> how its night queries are chosen (layouts.py)
    mining: str = None                # a database/queries training set for train.method: triplet_mining
    target: str = None                # unlabeled target-domain images for domain_adaptation
    extra_train: tuple = ()           # folders of extra training images joined to places by their note field


@dataclass(frozen=True)
class GTSection:
    radius_m: float = 25.0
    train_min_images: int = 4
    strict: bool = False              # bad images (no coordinates, do not decode) fail build_gt instead of a warning
    check_images: str = "header"      # none | header (format + end marker, ~0.05 ms/image) | decode (~1 ms/image)

    def __post_init__(self):
        require(self.radius_m > 0, "gt.radius_m", f"must be > 0 metres, got {self.radius_m}")
        require(self.train_min_images >= 2, "gt.train_min_images", f"must be >= 2, got {self.train_min_images}")
        require(self.check_images in ("none", "header", "decode"), "gt.check_images",
                f"'{self.check_images}' is not one of: none, header, decode")


@dataclass(frozen=True)
class ModelSection:
    descriptor_dim: int = None   # optional FC projection after the aggregator (null = none)
    normalize: bool = True       # L2-normalise descriptors (false: raw, as the course template tests them)

    def __post_init__(self):
        require(self.descriptor_dim is None or (isinstance(self.descriptor_dim, int) and self.descriptor_dim > 0),
                "model.descriptor_dim", f"must be a positive integer or null, got {self.descriptor_dim!r}")


VAL_METRICS = ("R@1", "R@5", "R@10", "R@20")


@dataclass(frozen=True)
class TrainSection:
    epochs: int = 5
    image_size: list | None = (72, 96)   # null = native size (every training image of one size)
    places_per_batch: int = 16
    images_per_place: int = 4
    batches_per_epoch: int = None     # null = one pass over the places
    warmup_steps: int = 0             # linear learning-rate warm-up, composed with any scheduler
    head_lr: float = None             # learning rate of the aggregator + projection (null = the optimizer's lr)
    amp: bool = False                 # mixed precision on CUDA (a no-op on CPU)
    compile: bool = False             # torch.compile the model on CUDA (a no-op on CPU)
    patience: int = 3                 # early stopping: epochs without val improvement (0 = off)
    select_best_by: str = "R@1"
    num_workers: int = 1
    device: str = "auto"              # auto | cpu | cuda
    method: str = "places"            # places | triplet_mining | cosplace | self_supervised (settings: methods.*)
    processes: int = 1                # DDP processes on this machine (torchrun; one per GPU); 1 = no DDP
    sync_batchnorm: bool = True       # with processes > 1: BatchNorm statistics over the global batch
    augment_on: str = "workers"       # workers (per image, CPU loader workers) | device (on the batch, e.g. GPU)
    channels_last: bool = True        # channels-last memory format (faster convolutions on CUDA and CPU)

    def __post_init__(self):
        k = "train"
        require(self.epochs >= 0, f"{k}.epochs", f"must be >= 0 (0 = evaluate the untrained model), got {self.epochs}")
        _size(f"{k}.image_size", self.image_size)
        require(self.places_per_batch >= 2, f"{k}.places_per_batch", f"must be >= 2, got {self.places_per_batch}")
        require(self.images_per_place >= 2, f"{k}.images_per_place", f"must be >= 2, got {self.images_per_place}")
        require(self.batches_per_epoch is None or self.batches_per_epoch >= 1, f"{k}.batches_per_epoch",
                "must be >= 1 or null")
        require(self.patience >= 0, f"{k}.patience", "must be >= 0")
        require(self.warmup_steps >= 0, f"{k}.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        require(self.head_lr is None or (isinstance(self.head_lr, (int, float)) and not isinstance(self.head_lr, bool)
                                         and self.head_lr > 0), f"{k}.head_lr",
                f"must be a learning rate > 0 or null (= the optimizer's), got {self.head_lr!r}")
        require(self.select_best_by in VAL_METRICS, f"{k}.select_best_by",
                f"'{self.select_best_by}' is not one of {', '.join(VAL_METRICS)}")
        require(self.num_workers >= 0, f"{k}.num_workers", "must be >= 0")
        require(self.device in ("auto", "cpu", "cuda"), f"{k}.device", f"'{self.device}' is not auto, cpu or cuda")
        require(self.processes >= 1, f"{k}.processes", f"must be >= 1, got {self.processes}")
        require(self.places_per_batch % self.processes == 0, f"{k}.places_per_batch",
                f"{self.places_per_batch} places cannot be split evenly over train.processes={self.processes} "
                f"(each process takes whole places of every batch); use a multiple of {self.processes}")
        require(self.augment_on in ("workers", "device"), f"{k}.augment_on",
                f"'{self.augment_on}' is not workers or device")


@dataclass(frozen=True)
class ExtractSection:
    image_size: list | None = (72, 96)   # null = native size (images of one size batched together)
    checkpoint: str = "best"          # best | last: which weights are tested (models/best.pt or models/last.pt)
    resize: str = "keep_aspect"       # stretch | keep_aspect | cover_crop (vpr.eval.prepare), also for validation
    resize_side: str = "shorter"      # keep_aspect: the shorter (or longer) side takes image_size's
    query_method: str = "single"      # single | central_crop | five_crops | nearest_crop | maj_voting (VG benchmark)
    majority_weight: float = 0.01     # maj_voting: distance bonus per vote
    batch_size: int = 64
    num_workers: int = 1
    device: str = "auto"
    scales: list = (1.0,)             # multi-scale testing: resize factors whose descriptors are fused
    fusion: str = "avg"               # avg | sum | max | min
    ensemble: list = ()               # more models: [{checkpoint: path} | {experiment: name}, weight: 1.0]
    pca: dict = field(default_factory=lambda: {"dim": None, "fit_on": "train", "whiten": False,
                                               "train_images": 1000})
    dtype: str = "float16"            # storage of the descriptors (.npy): float16 halves disk and memory

    def __post_init__(self):
        _size("extract.image_size", self.image_size)
        require(self.checkpoint in ("best", "last"), "extract.checkpoint", f"'{self.checkpoint}' is not best or last")
        self.prep(self.image_size)    # checks resize and resize_side
        from vpr.eval.query_methods import check
        check(self.query_method)
        require(self.majority_weight >= 0, "extract.majority_weight", f"must be >= 0, got {self.majority_weight}")
        require(self.dtype in ("float16", "float32"), "extract.dtype", f"'{self.dtype}' is not float16 or float32")
        require(self.batch_size >= 1, "extract.batch_size", "must be >= 1")
        require(self.num_workers >= 0, "extract.num_workers", "must be >= 0")
        require(self.device in ("auto", "cpu", "cuda"), "extract.device", f"'{self.device}' is not auto, cpu or cuda")
        require(len(self.scales) > 0 and all(isinstance(s, (int, float)) and 0.1 <= s <= 4 for s in self.scales),
                "extract.scales", f"must be a non-empty list of factors in [0.1, 4], got {list(self.scales)}")
        require(self.fusion in ("avg", "sum", "max", "min"), "extract.fusion",
                f"'{self.fusion}' is not one of avg, sum, max, min")
        for i, member in enumerate(self.ensemble):
            key = f"extract.ensemble[{i}]"
            require(isinstance(member, dict) and len({"checkpoint", "experiment"} & set(member)) == 1
                    and set(member) <= {"checkpoint", "experiment", "weight"}, key,
                    f"expected {{checkpoint: <path>}} or {{experiment: <name>}} with an optional weight, got {member!r}")
            require(member.get("weight", 1.0) > 0, f"{key}.weight", "must be > 0")
        pca = {"dim": None, "fit_on": "train", "whiten": False, "train_images": 1000, **(self.pca or {})}
        unknown = set(pca) - {"dim", "fit_on", "whiten", "train_images"}
        require(not unknown, f"extract.pca.{sorted(unknown)[0] if unknown else ''}",
                "unknown key; allowed: dim, fit_on, whiten, train_images")
        require(pca["dim"] is None or (isinstance(pca["dim"], int) and pca["dim"] >= 1), "extract.pca.dim",
                f"must be a positive integer or null (no PCA), got {pca['dim']!r}")
        require(pca["fit_on"] in ("database", "train"), "extract.pca.fit_on",
                f"'{pca['fit_on']}' is not database or train")
        require(isinstance(pca["whiten"], bool), "extract.pca.whiten", "must be true or false")
        require(isinstance(pca["train_images"], int) and pca["train_images"] >= 2, "extract.pca.train_images",
                "must be an integer >= 2")
        object.__setattr__(self, "pca", pca)

    def prep(self, image_size="extract"):
        """The image-preparation policy at ``image_size`` (default: extract.image_size), e.g. the training
        size for validation."""
        from vpr.eval.prepare import ImagePrep
        size = self.image_size if image_size == "extract" else image_size
        return ImagePrep(None if size is None else tuple(size), self.resize, self.resize_side)


@dataclass(frozen=True)
class EvalSection:
    recall_values: list = (1, 5, 10, 20)
    index: str = "flat"               # kNN: flat (exact, chunked) | ivf | hnsw (approximate); vpr.eval.knn
    flat: dict = field(default_factory=dict)    # settings of each index (defaults from vpr.eval.knn)
    ivf: dict = field(default_factory=dict)
    hnsw: dict = field(default_factory=dict)

    def __post_init__(self):
        v = list(self.recall_values)
        require(len(v) > 0 and all(isinstance(n, int) and n >= 1 for n in v) and v == sorted(set(v)),
                "eval.recall_values", f"must be increasing positive integers, got {v}")
        from vpr.eval.knn import INDEXES
        INDEXES.get(self.index, key="eval.index")
        for name in INDEXES.names():   # every index's settings, not only the chosen one
            INDEXES.build(name, settings=getattr(self, name), key=f"eval.{name}")


@dataclass(frozen=True)
class VizSection:
    num_queries: int = 8
    top_k: int = 5
    only_wrong: bool = False          # keep only queries whose top-1 is wrong
    curve_max_n: int = 50             # recall@N curve for N = 1..curve_max_n
    seed: int = 0                     # which queries are drawn

    def __post_init__(self):
        require(self.num_queries >= 0, "viz.num_queries", f"must be >= 0, got {self.num_queries}")
        require(1 <= self.top_k <= 20, "viz.top_k", f"must be 1..20, got {self.top_k}")
        require(self.curve_max_n >= 1, "viz.curve_max_n", "must be >= 1")


SECTIONS = dict(synthetic=SyntheticSpec, data=DataSection, gt=GTSection, model=ModelSection,
                train=TrainSection, extract=ExtractSection, eval=EvalSection, viz=VizSection)
TOP_LEVEL = {"seed", "datasets", "augment", *CHOICES, *SECTIONS,
             "backbones", "aggregators", "losses", "miners", "optimizers", "schedulers", "samplers", "data_profiles",
             "methods", "domain_adaptation", "self_supervised"}


def _read_section(raw: dict, name: str, cls):
    values = raw.get(name) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k, v in values.items():
        if k not in fields:
            raise ConfigError(f"{name}.{k}: unknown key; allowed: {', '.join(fields)}")
        f = fields[k]
        if v is None and "None" in str(f.type):    # declared `X | None`: null is a documented value
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        check_type(f"{name}.{k}", v, default)
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


@dataclass
class Config:
    raw: dict
    sections: dict

    def __getattr__(self, name: str) -> Any:
        if name in ("raw", "sections"):
            raise AttributeError(name)
        if name in self.sections:
            return self.sections[name]
        if name in self.raw:
            return self.raw[name]
        raise AttributeError(name)

    def settings(self, kind: str) -> dict:
        """Validated settings of the chosen ``kind`` (e.g. 'loss'), defaults filled in."""
        name = self.raw[kind]
        registry = _registries()[kind]
        return registry.check(name, (self.raw.get(registry.section) or {}).get(name))

    @property
    def seed(self) -> int:
        return int(self.raw.get("seed", 0))


def load_params(path: str | os.PathLike = "params.yaml") -> dict:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: params file not found; run from the repository root")
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return raw


def validate(raw: dict, checked: bool = False) -> Config:
    """Check every key and value of params.yaml; return the typed view. ``checked``: these very params
    already passed the registry checks with this very code (see load_config), which are then skipped."""
    for key in raw:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown top-level key in params.yaml; allowed: {', '.join(sorted(TOP_LEVEL))}")
    check_type("seed", raw.get("seed", 0), 0)
    if not checked:
        _check_choices(raw)
    sections = {name: _read_section(raw, name, cls) for name, cls in SECTIONS.items()}
    if not checked:
        _check_training_extras(raw, sections["train"])
    _check_datasets(raw.get("datasets"), sections["data"])
    _check_data_profiles(raw.get("data_profiles"), raw.get("datasets"))
    return Config(raw, sections)


def _check_choices(raw: dict) -> None:
    """The registry choices and every listed entry's settings, and the augmentation list (imports torch)."""
    registries = _registries()
    for kind, registry in registries.items():
        if kind not in raw:
            raise ConfigError(f"{kind}: missing; choose one of: {', '.join(registry.names())}")
        if not isinstance(raw[kind], str):
            raise ConfigError(f"{kind}: expected a name, one of: {', '.join(registry.names())}; got {raw[kind]!r}")
        registry.get(raw[kind], key=kind)
        section = raw.get(registry.section) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{registry.section}: expected a mapping of {kind} name -> settings")
        for name, settings in section.items():  # every listed entry, not only the chosen one
            registry.get(name, key=f"{registry.section}.{name}")
            if settings is not None and not isinstance(settings, dict):
                raise ConfigError(f"{registry.section}.{name}: expected a mapping of settings, got {settings!r}")
            _check_values(registry, name, settings)

    from vpr.data.transforms import check_augment
    check_augment(raw.get("augment"))


def _check_training_extras(raw: dict, train) -> None:
    """train.method and its settings (methods.*), and the add-on loss terms' sections."""
    from vpr.train import domain_adaptation, self_supervised
    from vpr.train.methods import METHODS
    METHODS.get(train.method, key="train.method")
    methods = raw.get("methods") or {}
    if not isinstance(methods, dict):
        raise ConfigError("methods: expected a mapping of method name -> settings")
    for name, settings in methods.items():
        METHODS.get(name, key=f"methods.{name}")
        METHODS.check(name, settings)
    self_supervised.check_settings(raw.get("self_supervised"))
    domain_adaptation.check_settings(raw.get("domain_adaptation"))


def _check_values(registry: Registry, name: str, settings) -> None:
    """Run the builder's own range checks on a stand-in context (cheap: no real model or data)."""
    import torch
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    context = {"losses": (10, 8), "miners": (), "aggregators": (8, (4, 4)), "optimizers": (dummy,),
               "schedulers": (torch.optim.SGD(dummy, lr=0.1), 1, 1, 0)}
    # backbones and samplers need the real model / training set: they are checked when built, first thing
    # in the train stage, before any training
    if registry.section in context:
        registry.build(name, *context[registry.section], settings=settings)


def _check_datasets(datasets, data: DataSection, key: str = "data") -> None:
    from vpr.data.sources import check_spec
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError("datasets: expected at least one dataset, e.g. {synth: {source: synthetic}}")
    for name, spec in datasets.items():
        check_spec(name, spec)
    if not isinstance(data.test, dict) or not data.test:
        raise ConfigError(f"{key}.test: the list of evaluation sets is empty; name at least one, "
                          "e.g. {synth_test: synth/test}")
    fetched = list(data.fetch)
    if not fetched or len(set(fetched)) != len(fetched) or not all(isinstance(n, str) for n in fetched):
        raise ConfigError(f"{key}.fetch: expected a list of distinct dataset names, e.g. [synth]; got {fetched!r}")
    for name in fetched:
        require(name in datasets, f"{key}.fetch", f"'{name}' is not in datasets ({', '.join(datasets)})")
    roles = [(f"{key}.train", data.train), (f"{key}.val", data.val)] + \
        [(f"{key}.test.{k}", v) for k, v in data.test.items()] + \
        [(f"{key}.{k}", getattr(data, k)) for k in ("mining", "target") if getattr(data, k) is not None] + \
        [(f"{key}.extra_train[{i}]", v) for i, v in enumerate(data.extra_train)]
    for role, folder in roles:
        if not isinstance(folder, str) or folder.split("/")[0] not in datasets:
            raise ConfigError(f"{role}: '{folder}' must be a folder under data/raw starting with a dataset name "
                              f"from 'datasets' ({', '.join(datasets)})")
        require(folder.split("/")[0] in fetched, role,
                f"'{folder}' is in dataset '{folder.split('/')[0]}', which {key}.fetch does not list; add it there")
    for name in data.test:
        require(name not in ("train", "val") and name.replace("_", "").isalnum(), f"{key}.test.{name}",
                "eval set names must be letters, digits and '_' (and not 'train' or 'val')")
    from vpr.data.layouts import check_night_spec
    for name, spec in data.night.items():
        require(name in data.test, f"{key}.night.{name}", f"no evaluation set '{name}' in {key}.test")
        check_night_spec(f"{key}.night.{name}", spec)


def _check_data_profiles(profiles, datasets) -> None:
    """``data_profiles.<name>``: ready-made ``data`` sections, applied with
    ``dvc exp run -S 'data=${data_profiles.<name>}'``; each must be a valid ``data`` section."""
    if profiles is None:
        return
    if not isinstance(profiles, dict):
        raise ConfigError("data_profiles: expected a mapping of profile name -> data section")
    for name, profile in profiles.items():
        key = f"data_profiles.{name}"
        missing = [k for k in ("fetch", "train", "val", "test") if not isinstance(profile, dict) or k not in profile]
        require(not missing, key, f"a profile replaces the whole data section: give {', '.join(missing)} too")
        _check_datasets(datasets, _read_section({key: profile}, key, DataSection), key)


def load_config(path: str | os.PathLike = "params.yaml", stamps: str | os.PathLike | None = None) -> Config:
    """Load and validate params. ``stamps``: a folder remembering which params passed the full checks with
    which code (a stamp named by the hash of both): then a pipeline's later stages skip the registry checks,
    which import torch, torchvision and the model zoo: seconds per stage for stages that need none of them."""
    raw = load_params(path)
    if stamps is None:
        return validate(raw)
    stamp = os.path.join(os.fspath(stamps), _params_and_code_hash(raw))
    if os.path.isfile(stamp):
        return validate(raw, checked=True)
    cfg = validate(raw)
    os.makedirs(os.fspath(stamps), exist_ok=True)
    with open(stamp, "w") as fh:
        fh.write("these params passed the full validation with this code\n")
    return cfg


def _params_and_code_hash(raw: dict) -> str:
    import hashlib
    import json
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode())
    package = os.path.dirname(os.path.abspath(__file__))
    for folder, dirs, files in sorted(os.walk(package)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                with open(os.path.join(folder, name), "rb") as fh:
                    digest.update(name.encode() + fh.read())
    return digest.hexdigest()[:32]
