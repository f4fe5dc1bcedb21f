"""Supervised training on labelled crops: the source-only baseline and the target oracle."""

from __future__ import annotations

import torch

from vdatrain.losses import segmentation_loss


class Supervised:
    """L = CE(model(x_t), y_t) on the "source" stream (the oracle's "source" is the labelled target)."""

    def __init__(self, model: torch.nn.Module):
        pass

    def losses(self, model: torch.nn.Module, batch: dict, it: int) -> dict[str, torch.Tensor]:
        src = batch["source"]
        return {"source": segmentation_loss(model(src["image"][:, 0]), src["label"])}

    def after_step(self, model: torch.nn.Module, it: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
