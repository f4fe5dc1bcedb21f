"""DA-VSN's video discriminator: source or target, judged from the predictions of two frames.

Input, by `softmax` (recipe `adapt.video_disc`; the defaults are the reference code's):
- "joint" (the reference, and the paper's text): the logits of frames t and t+k,
  resized to `scale` x the crop (0.5 in the reference), concatenated (B, 2C, h, w)
  and passed through ONE softmax over all 2C channels;
- "per_frame" (DA-VSN's own): each frame's softmax on its own, then stacked.
Network: AdaptSegNet's, five 4x4 stride-2 convolutions 64-128-256-512-1 with LeakyReLU
0.2 between them -> (B, 1, h/32, w/32). Least-squares GAN with the reference's labels
(source 0, target 1; `uda/dacsAdvseg.py` `forward_train_videodisc`): the discriminator learns
D(source) -> 0, D(target) -> 1,

    L_D = own_loss_scale * 1/2 [mean D(p_s)^2 + mean (D(p_t) - 1)^2]   (its own Adam and poly schedule)

with own_loss_scale 0.1 (the reference's adv_scale on its D losses), and the segmentation
network is pushed to make target predictions look like source ones,

    L_adv = weight * mean D(p_t)^2

with weight 1e-4 in the reference code (lambda_adv_target 0.001 x adv_scale 0.1); the
paper's text says 0.1 (the `*-paper-text` recipes). The discriminator's step runs
after the segmentation network's, on detached predictions: `VideoAdversary.optimizer()`
declares it to the training loop (`vdatrain.optim.PartOptimizer`), which steps it.
Which logits it judges (each frame in its own forward, a two-frame student's fused
logits) is the method's business (`vdatrain.methods.self_training`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class VideoDiscriminator(nn.Module):
    def __init__(self, in_channels: int, width: int = 64, softmax: str = "joint"):
        super().__init__()
        if softmax not in ("joint", "per_frame"):
            raise ValueError(f"softmax {softmax!r}: choose joint or per_frame")
        self.softmax = softmax
        chans = [in_channels, width, width * 2, width * 4, width * 8]
        layers = []
        for a, b in zip(chans, chans[1:]):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers, nn.Conv2d(chans[-1], 1, 4, stride=2, padding=1))

    def inputs(self, logits_t: torch.Tensor, logits_k: torch.Tensor) -> torch.Tensor:
        """Two (B, C, h, w) logits -> (B, 2C, h, w) probabilities, as `softmax` says."""
        if self.softmax == "joint":
            return F.softmax(torch.cat([logits_t.float(), logits_k.float()], dim=1), dim=1)
        return torch.cat([F.softmax(logits_t.float(), dim=1), F.softmax(logits_k.float(), dim=1)], dim=1)

    def forward(self, logits_t: torch.Tensor, logits_k: torch.Tensor) -> torch.Tensor:
        """Two (B, C, h, w) logits -> (B, 1, h/32, w/32) scores (0 = source, 1 = target)."""
        return self.net(self.inputs(logits_t, logits_k))


SOURCE, TARGET = 0.0, 1.0  # the discriminator's labels (the reference's)


def discriminator_loss(d_source: torch.Tensor, d_target: torch.Tensor) -> torch.Tensor:
    """LS-GAN loss of the discriminator: source scores towards SOURCE, target scores towards TARGET."""
    return 0.5 * (((d_source - SOURCE) ** 2).mean() + ((d_target - TARGET) ** 2).mean())


def adversarial_loss(d_target: torch.Tensor) -> torch.Tensor:
    """LS-GAN loss of the segmentation network: target scores towards SOURCE (look like the source)."""
    return ((d_target - SOURCE) ** 2).mean()


class VideoAdversary:
    """The discriminator, its optimiser and schedule. `judge` keeps a batch's detached predictions; the loop
    steps the declared optimiser (`optimizer()`) on `loss()` of them after the network's step."""

    def __init__(self, num_classes: int, spec, iters: int, device):
        self.spec, self.iters = spec, iters
        self.model = VideoDiscriminator(2 * num_classes, softmax=spec.softmax).to(device)
        self.adam = torch.optim.Adam(self.model.parameters(), lr=spec.lr, betas=tuple(spec.betas))
        self._judged = None  # detached (source, target) prediction pairs of this iteration

    def input_size(self, crop: tuple[int, int]) -> tuple[int, int]:
        """(h, w) the frames' logits are resized to before the discriminator: `scale` x the crop."""
        return round(crop[0] * self.spec.scale), round(crop[1] * self.spec.scale)

    def generator_loss(self, logits_t: torch.Tensor, logits_k: torch.Tensor) -> torch.Tensor:
        """The segmentation network's weighted adversarial loss for target logits; the discriminator's
        parameters take no gradient from it."""
        self.model.requires_grad_(False)
        try:
            return self.spec.weight * adversarial_loss(self.model(logits_t, logits_k))
        finally:
            self.model.requires_grad_(True)

    def judge(self, source: tuple[torch.Tensor, torch.Tensor], target: tuple[torch.Tensor, torch.Tensor]) -> None:
        """Keep (logits_t, logits_k) of source and target for this iteration's discriminator step."""
        self._judged = (tuple(x.detach() for x in source), tuple(x.detach() for x in target))

    def lr(self, it: int) -> float:
        """Poly schedule: lr (1 - it / iters) ** power."""
        return self.spec.lr * (1 - it / self.iters) ** self.spec.power

    def loss(self) -> torch.Tensor | None:
        """The discriminator's LS-GAN loss on the kept predictions (None when there are none), consumed."""
        if self._judged is None:
            return None
        source, target = self._judged
        self._judged = None
        return self.spec.own_loss_scale * discriminator_loss(self.model(*source), self.model(*target))

    def optimizer(self):
        from vdatrain.optim import PartOptimizer

        return PartOptimizer("disc", self.adam, self.model, self.loss, self.lr)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.adam.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.adam.load_state_dict(state["optimizer"])
