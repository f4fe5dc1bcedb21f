"""Domain-adaptive self-training (DACS and its descendants), composed from the recipe's `adapt` parts.

One iteration (batch B source + B target crops):
1. source:  L_src = CE(student(x_s), y_s)  [+ FD on the source features, same forward]
2. pseudo-labels from the EMA teacher's full prediction on the un-augmented target
   (HRDA: context + sliding detail), with ONE confidence weight per batch x margin mask
3. mix:     ClassMix source into target, strong augmentation, L_mix = CE(student(x_mix), y_mix, w_mix)
4. MIC:     L_mask = CE(student(mask * aug(x_t)), pseudo-label, weight)
then (after the optimiser step) the teacher's EMA update. Under HRDA every student
loss is (1 - w) CE(fused) + w CE(detail box) with w = 0.1, and the feature distance
uses the context branch. Each step is one forward pass and one loss group, so the
loop frees each graph before the next forward.
"""

from __future__ import annotations

import torch

from vdatrain.adapt.augment import strong_augment
from vdatrain.adapt.classmix import class_masks, mix
from vdatrain.adapt.ema import EMATeacher
from vdatrain.adapt.feature_distance import FeatureDistance
from vdatrain.adapt.mic import block_mask
from vdatrain.adapt.pseudo_label import pseudo_label
from vdatrain.methods.student import student_loss


class SelfTraining:
    def __init__(self, recipe, model: torch.nn.Module):
        self.adapt, self.hrda = recipe.adapt, recipe.model.hrda
        self.teacher = EMATeacher(model, self.adapt.ema_alpha)
        self.fd = FeatureDistance(model, self.adapt.fd, recipe.model.num_classes) if self.adapt.fd else None
        self.stats: dict = {}  # logged with the losses

    def losses(self, net, batch: dict, it: int, amp):
        a, src, tgt = self.adapt, batch["source"], batch["target"]
        xs, ys, xt = src["image"][:, 0], src["label"], tgt["image"][:, 0]

        loss, feats, seen = student_loss(net, xs, ys, None, self.hrda, amp)
        terms = {"source": loss}
        if self.fd is not None:
            terms["fd"] = self.fd.loss(feats, seen, ys)
        yield terms

        with amp():
            teacher_logits = self.teacher.predict(xt)
        pl, pw = pseudo_label(teacher_logits, a.pseudo_threshold, xt.shape[-2:], tgt.get("margin"))
        # the batch's confident share (before margins); a tensor, read only when logged (no sync per step)
        self.stats = {"pseudo_weight": pw.max().detach()}

        if a.mix == "classmix":
            m = class_masks(ys)
            x_mix, y_mix, w_mix = mix(m, xs, xt), mix(m, ys, pl), mix(m, torch.ones_like(pw), pw)
        else:
            x_mix, y_mix, w_mix = xt, pl, pw
        if a.augment is not None:
            x_mix = strong_augment(x_mix, a.augment)
        yield {"mix": student_loss(net, x_mix, y_mix, w_mix, self.hrda, amp)[0]}

        if a.mic is not None:
            x_aug = strong_augment(xt, a.augment) if a.augment is not None else xt
            keep = block_mask(len(xt), xt.shape[-2:], a.mic.block, a.mic.mask_ratio, xt.device)
            yield {"mic": a.mic.weight * student_loss(net, x_aug * keep, pl, pw, self.hrda, amp)[0]}

    def after_step(self, model: torch.nn.Module, it: int) -> None:
        self.teacher.update(model, it + 1)

    def state_dict(self) -> dict:
        return {"teacher": self.teacher.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.teacher.model.load_state_dict(state["teacher"])
