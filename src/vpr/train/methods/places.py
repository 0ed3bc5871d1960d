"""The place-batch method (GSV-Cities, the course template): P places x K images per batch, a
pytorch-metric-learning loss and miner (``loss``, ``miner``, ``sampler``)."""

from __future__ import annotations

from vpr.data.samplers import SAMPLERS, GlobalProxySampler
from vpr.train.addons.proxy_head import ProxyHeadTerm
from vpr.train.context import Context, Method
from vpr.train.losses import LOSSES, MINERS
from vpr.train.objectives import MetricObjective


def places(ctx: Context):
    """P places x K images per batch, a metric-learning loss and miner (`loss`, `miner`, `sampler`)."""
    cfg, t, places_ = ctx.cfg, ctx.cfg.train, ctx.data.places
    sampler = SAMPLERS.build(
        cfg.raw["sampler"],
        places_,
        t.places_per_batch,
        t.images_per_place,
        cfg.seed,
        t.batches_per_epoch,
        settings=cfg.settings("sampler"),
    )
    loss = LOSSES.build(
        cfg.raw["loss"], places_.num_places, ctx.model.descriptor_dim, settings=cfg.settings("loss")
    )
    # GPM: a proxy head learns the place proxies the sampler builds its batches from
    terms = (
        [ProxyHeadTerm(sampler, ctx.model.descriptor_dim, sampler.proxy_dim)]
        if isinstance(sampler, GlobalProxySampler)
        else []
    )
    objective = MetricObjective(
        loss, MINERS.build(cfg.raw["miner"], settings=cfg.settings("miner")), terms
    )
    groups = []
    loss_params = [p for p in loss.parameters() if p.requires_grad]
    if loss_params:  # class centres / proxies learn at their own rate
        groups.append({"params": loss_params, "lr": loss.weights_lr})
    if ctx.view_transform is None:
        # The fast path: decoding in persistent workers, uint8 hand-over, normalisation (optionally augmentation)
        # on the device, augmentation seeded per image; DDP shares of each global batch (vpr.data.loading).
        from vpr.data.loading import PlaceBatches

        batches = PlaceBatches(
            places_,
            sampler,
            cfg.augment,
            t.image_size,
            ctx.model.mean,
            ctx.model.std,
            seed=cfg.seed,
            device=ctx.device,
            num_workers=t.num_workers,
            augment_on=t.augment_on,
            channels_last=t.channels_last,
            rank=ctx.rank,
            world=ctx.world,
        )
    else:  # a second augmented view per image (the self-supervised auxiliary loss): the generic loader
        dataset = ctx.dataset(places_.paths, places_.place_of_image)

        def batches(epoch: int):
            sampler.set_epoch(epoch)
            return ctx.loader(dataset, sampler, epoch)

    return Method(objective, batches, len(sampler), sampler, groups)
