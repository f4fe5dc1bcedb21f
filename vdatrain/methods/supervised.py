"""Supervised training on labelled crops: the source-only baseline and the target oracle."""

from __future__ import annotations

import torch

from vdatrain.methods.student import student_loss


class Supervised:
    """L = CE(model(x_t), y_t) on the "source" stream (the oracle's "source" is the labelled target);
    under HRDA, (1 - w) CE(fused) + w CE(detail box)."""

    optimizers: list = []  # nothing besides the model's

    def __init__(self, recipe, model: torch.nn.Module, dist=None):
        self.detail_weight = recipe.model.hrda.detail_loss_weight if recipe.model.hrda else 0.0
        self.stats: dict = {}

    def group_count(self, it: int) -> int:
        return 1

    def sample_options(self, part: str) -> dict:
        return {"labels": True}

    def source_chooser(self, source, seed: int):
        return None

    def losses(self, model: torch.nn.Module, batch: dict, it: int, amp):
        src = batch["source"]
        yield {"source": student_loss(model, src["image"][:, 0], src["label"], None, self.detail_weight, amp)[0]}

    def after_step(self, model: torch.nn.Module, it: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
