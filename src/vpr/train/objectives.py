"""Training objectives: ``objective(model, batch) -> (loss, logs)``, a method's main loss plus add-on terms.

A term is ``term(model, batch, out) -> (loss, logs)``, where ``out`` holds what the model computed on
``batch["images"]`` (``descriptors`` and the backbone ``features``); terms are how add-ons plug in (the
domain classifier, VICReg, GPM's proxy head: vpr.train.addons).
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


class Objective(nn.Module):
    """Base of the training objectives: ``main_loss(model, batch, out)`` plus extra loss terms.

    ``out`` holds what the model computed on ``batch["images"]`` (``descriptors`` and the backbone
    ``features``); each term is ``term(model, batch, out) -> (loss, logs)`` and is added to the total.
    Terms are how add-ons plug in (GPM's proxy head, domain adaptation, the self-supervised loss)."""

    name = "loss"

    def __init__(self, terms: Iterable[nn.Module] = ()):
        super().__init__()
        self.terms = nn.ModuleList(terms)

    def main_loss(self, model, batch, out):
        raise NotImplementedError

    def forward(self, model, batch):
        descriptors, features = model(batch["images"], return_features=True)
        out = {"descriptors": descriptors, "features": features}
        loss = self.main_loss(model, batch, out)
        logs = {self.name: loss.item()}
        for term in self.terms:
            extra, term_logs = term(model, batch, out)
            loss = loss + extra
            logs.update(term_logs)
        return loss, logs

    def add_terms(self, terms) -> None:
        for term in terms:
            self.terms.append(term)


class MetricObjective(Objective):
    """A pytorch-metric-learning loss on place labels, optionally fed by a miner (the ``places`` method)."""

    name = "metric_loss"

    def __init__(
        self, loss: nn.Module, miner: nn.Module | None = None, terms: Iterable[nn.Module] = ()
    ):
        super().__init__(terms)
        self.loss, self.miner = loss, miner

    def main_loss(self, model, batch, out):
        descriptors, labels = out["descriptors"], batch["labels"]
        tuples = self.miner(descriptors, labels) if self.miner is not None else None
        return self.loss(descriptors, labels, tuples)
