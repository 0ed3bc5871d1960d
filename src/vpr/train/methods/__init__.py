"""Training methods (``train.method``): each gives the one training loop a batch provider and an objective.

    places          P places x K images with a metric-learning loss (GSV-Cities / the course; default)
    triplet_mining  query / positive / hard negatives mined from a database-queries set (VG benchmark)
    cosplace        classification of UTM-cell x heading classes, one CosFace head per group (CosPlace)
    self_supervised label-free: VICReg between two augmented views of each image

One module per method; each builder takes a :class:`~vpr.train.context.Context` and its settings
(``methods.<name>``, declared in vpr.config.catalog) and returns a :class:`~vpr.train.context.Method`.
Add-ons (vpr.train.addons) attach as loss terms whatever the method.
"""

from __future__ import annotations

from vpr.registry import Registry
from vpr.train.methods import cosplace, places, self_supervised, triplet_mining

METHODS = Registry("method")
METHODS.register("places")(places.places)
METHODS.register("triplet_mining")(triplet_mining.triplet_mining)
METHODS.register("cosplace")(cosplace.cosplace)
METHODS.register("self_supervised")(self_supervised.self_supervised)


# What each method reads of the top-level choices, and the aggregator its reference trains.
USES = {
    "places": ("loss", "miner", "sampler"),
    "triplet_mining": (),
    "cosplace": (),
    "self_supervised": (),
}
REFERENCE_AGGREGATOR = {"cosplace": "cosplace"}
_OWN_LOSS = {
    "triplet_mining": "its own triplet margin loss (methods.triplet_mining.margin)",
    "cosplace": "its own CosFace heads (methods.cosplace.margin, scale)",
    "self_supervised": "VICReg (self_supervised.*)",
}


def ignored_choices(method: str, raw: dict) -> list[str]:
    """One line per setting the chosen method does not read, or an aggregator other than its reference's:
    never silent (a `-S loss=circle` with train.method: cosplace would otherwise change nothing)."""
    lines = []
    unused = [k for k in ("loss", "miner", "sampler") if k not in USES.get(method, ())]
    if unused:
        listed = ", ".join(f"{k} ({raw.get(k)})" for k in unused)
        lines.append(
            f"train.method {method} trains with {_OWN_LOSS.get(method, 'its own objective')}: {listed} "
            f"{'is' if len(unused) == 1 else 'are'} not used"
        )
    wanted = REFERENCE_AGGREGATOR.get(method)
    if wanted and raw.get("aggregator") != wanted:
        lines.append(
            f"train.method {method}: its reference trains the {wanted} aggregator, this run uses "
            f"{raw.get('aggregator')}; set aggregator: {wanted} to compare with the paper"
        )
    return lines
