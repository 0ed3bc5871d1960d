"""Training methods (``train.method``): each gives the one training loop a batch provider and an objective.

    places          P places x K images with a metric-learning loss (GSV-Cities / the course; default)
    triplet_mining  query / positive / hard negatives mined from a database-queries set (VG benchmark)
    cosplace        classification of UTM-cell x heading classes, one CosFace head per group (CosPlace)
    self_supervised label-free: VICReg between two augmented views of each image

Builders take a :class:`Context` and their settings (``methods.<name>`` in params.yaml) and return a
:class:`Method`. Add-ons (domain adaptation, the self-supervised auxiliary loss) attach as loss terms in
``recipe.py``, whatever the method.
"""
from __future__ import annotations

from vpr.registry import Registry
from vpr.train import cosplace, self_supervised, triplet_mining
from vpr.train.context import Context, Method, TrainImages  # noqa: F401  (re-exported)

METHODS = Registry("method", "methods")


@METHODS.register(paper="Ali-bey et al., GSV-Cities, Neurocomputing 2022; the course template")
def places(ctx: Context):
    """P places x K images per batch, a metric-learning loss and miner (`loss`, `miner`, `sampler`)."""
    from vpr.data.samplers import SAMPLERS
    from vpr.train.losses import LOSSES, MINERS
    from vpr.train.loop import MetricObjective
    cfg, t, places_ = ctx.cfg, ctx.cfg.train, ctx.data.places
    sampler = SAMPLERS.build(cfg.sampler, places_, t.places_per_batch, t.images_per_place, cfg.seed,
                             t.batches_per_epoch, settings=cfg.settings("sampler"))
    loss = LOSSES.build(cfg.loss, places_.num_places, ctx.model.descriptor_dim, settings=cfg.settings("loss"))
    terms = sampler.objective_terms(ctx.model.descriptor_dim) if hasattr(sampler, "objective_terms") else []
    objective = MetricObjective(loss, MINERS.build(cfg.miner, settings=cfg.settings("miner")), terms)
    groups = []
    loss_params = [p for p in loss.parameters() if p.requires_grad]
    if loss_params:   # class centres / proxies learn at their own rate
        groups.append({"params": loss_params, "lr": loss.weights_lr})
    if ctx.view_transform is None:
        # The fast path: decoding in persistent workers, uint8 hand-over, normalisation (optionally augmentation)
        # on the device, augmentation seeded per image; DDP shares of each global batch (vpr.data.loading).
        from vpr.data.loading import PlaceBatches
        batches = PlaceBatches(places_, sampler, cfg.raw.get("augment"), t.image_size, ctx.model.mean,
                               ctx.model.std, seed=cfg.seed, device=ctx.device, num_workers=t.num_workers,
                               augment_on=t.augment_on, channels_last=t.channels_last, rank=ctx.rank, world=ctx.world)
    else:   # a second augmented view per image (the self-supervised auxiliary loss): the generic loader
        dataset = ctx.dataset(places_.paths, places_.place_of_image)

        def batches(epoch: int):
            sampler.set_epoch(epoch)
            return ctx.loader(dataset, sampler, epoch)

    return Method(objective, batches, len(sampler), sampler, groups)


# The other methods live in their own short modules, registered here in a fixed order.
METHODS.register("triplet_mining", paper=triplet_mining.PAPER)(triplet_mining.triplet_mining)
METHODS.register("cosplace", paper=cosplace.PAPER)(cosplace.cosplace)
METHODS.register("self_supervised", paper=self_supervised.PAPER)(self_supervised.self_supervised_method)


# What each method reads of the top-level choices, and the aggregator its reference trains.
USES = {"places": ("loss", "miner", "sampler"), "triplet_mining": (), "cosplace": (), "self_supervised": ()}
REFERENCE_AGGREGATOR = {"cosplace": "cosplace"}
_OWN_LOSS = {"triplet_mining": "its own triplet margin loss (methods.triplet_mining.margin)",
             "cosplace": "its own CosFace heads (methods.cosplace.margin, scale)",
             "self_supervised": "VICReg (self_supervised.*)"}


def ignored_choices(method: str, raw: dict) -> list[str]:
    """One line per setting the chosen method does not read, or an aggregator other than its reference's:
    never silent (a `-S loss=circle` with train.method: cosplace would otherwise change nothing)."""
    lines = []
    unused = [k for k in ("loss", "miner", "sampler") if k not in USES.get(method, ())]
    if unused:
        listed = ", ".join(f"{k} ({raw.get(k)})" for k in unused)
        lines.append(f"train.method {method} trains with {_OWN_LOSS.get(method, 'its own objective')}: {listed} "
                     f"{'is' if len(unused) == 1 else 'are'} not used")
    wanted = REFERENCE_AGGREGATOR.get(method)
    if wanted and raw.get("aggregator") != wanted:
        lines.append(f"train.method {method}: its reference trains the {wanted} aggregator, this run uses "
                     f"{raw.get('aggregator')}; set aggregator: {wanted} to compare with the paper")
    return lines
