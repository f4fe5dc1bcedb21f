"""Domain-adaptive self-training (DACS and its descendants), composed from the recipe's `adapt` parts.

One iteration (batch B source + B target crops):
1. source:  L_src = CE(student(x_s), y_s)  [+ FD on the source features, same forward]
2. pseudo-labels from the EMA teacher's full prediction on the un-augmented target
   (HRDA: context + sliding detail, all windows in one forward), with ONE confidence weight
   per batch x margin mask;
   [refine: the teacher's prediction of frame t+k (a call of its own) and its weight, warped to t
   through the target flow, refine the pseudo-label of t and its weight (consistency, max
   confidence, warp frame, oracles)]
3. mix:     ClassMix source into target, strong augmentation, L_mix = CE(student(x_mix), y_mix, w_mix)
   [refine: the refined label and weight are mixed, and the term is off before refine.start_iter]
4. MIC:     L_mask = CE(student(mask * aug(x_t)), pseudo-label, weight)
5. [video_disc: L_adv = w * LS-GAN(D(student(x_t), student(x_t+k)) -> source), each frame in its own
   forward (a two-frame student's fused logits), logits at scale x crop]
then (after the optimiser step) the video discriminator's own step (a declared optimiser the
loop steps) and the teacher's EMA update. Under HRDA every student loss is (1 - w) CE(fused) + w CE(detail box) with w = 0.1,
and the feature distance uses the context branch. A two-frame (ACCEL) student sees frame
t+k and the flow t -> t+k of each image it is given: the source's and target's own, and
for mixed images the target's [consistent_mix: mixed with the same ClassMix mask]; the mixed
frame t+k is augmented in a call of its own (`augment.frames: independent`). Each step is
one forward pass and one loss group, so the loop frees each graph before the next.

Several processes: the teacher predicts the GLOBAL target batch in every process (the inputs are
gathered once, `Dist.everyone`), so its BatchNorm statistics and the batch's confident share are the
single-GPU reference's, without a synchronisation per BatchNorm call; each process then keeps its share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from flowprep.store import pair_name, pair_offsets
from vdatrain.adapt.augment import strong_augment
from vdatrain.adapt.ema import EMATeacher
from vdatrain.adapt.feature_distance import FeatureDistance
from vdatrain.adapt.mic import block_mask
from vdatrain.adapt.mix import MIXES, mix
from vdatrain.adapt.pseudo_label import class_probs, confident_share
from vdatrain.adapt.rcs import RareClassSampler
from vdatrain.adapt.refine import IGNORE, needs_truth, refine
from vdatrain.adapt.video_discriminator import VideoAdversary
from vdatrain.distributed import Dist
from vdatrain.methods.student import student_loss
from vdatrain.models.contract import Partner
from vdatrain.models.warp import warp


def pair_for(spec, part: str) -> str:
    """The flow pair a video part (model.accel, adapt.video_disc) uses for the source or target batch."""
    return (spec.source_pair or spec.pair) if part == "source" else spec.pair


def partner_pair(accel_pair: str, frame_offset: int) -> str:
    """The flow pair a two-frame model needs to predict the frame at `frame_offset`: its own pair's distance,
    from that frame (bwd_1 at offset -1: bwd_1_at_m1, the flow t-1 -> t-2)."""
    d = pair_offsets(accel_pair)[1]
    return pair_name(frame_offset, frame_offset + d)


class SelfTraining:
    def __init__(self, recipe, model: torch.nn.Module, dist: Dist | None = None):
        self.adapt, self.accel = recipe.adapt, recipe.model.accel
        self.dist = dist or Dist(device=next(model.parameters()).device)
        self.detail_weight = recipe.model.hrda.detail_loss_weight if recipe.model.hrda else 0.0
        self.offsets = {"source": recipe.source.offsets, "target": recipe.target.offsets}
        self.teacher = EMATeacher(model, self.adapt.ema_alpha, self.adapt.teacher_statistics)
        self.fd = FeatureDistance(model, self.adapt.fd, recipe.model.num_classes) if self.adapt.fd else None
        device = next(model.parameters()).device
        self.adversary = VideoAdversary(recipe.model.num_classes, self.adapt.video_disc, recipe.train.iters, device) \
            if self.adapt.video_disc else None
        self.optimizers = [self.adversary.optimizer()] if self.adversary is not None else []
        self.stats: dict = {}  # logged with the losses

    def group_count(self, it: int) -> int:
        """How many loss groups `losses` yields at iteration `it`."""
        a = self.adapt
        mixing = a.refine is None or it >= a.refine.start_iter
        return 1 + mixing + (a.mic is not None) + (self.adversary is not None)

    def sample_options(self, part: str) -> dict:
        """Source crops under rare class sampling must hold enough of the drawn class; the target's labels are
        loaded only for a refinement that reads the ground truth (the oracles)."""
        rcs = self.adapt.rcs
        if part == "source":
            return {"labels": True, **({"rare_min_pixels": rcs.min_pixels * rcs.min_crop_ratio,
                                         "rare_retries": rcs.retries} if rcs else {})}
        return {"labels": self.adapt.refine is not None and needs_truth(self.adapt.refine.strategy)}

    def source_chooser(self, source, seed: int):
        rcs = self.adapt.rcs
        return RareClassSampler(source.class_counts(), rcs.temperature, rcs.min_pixels, seed) if rcs else None

    def partner_of(self, part: dict, name: str, pair: str) -> Partner:
        """The frame a flow pair leads to (B, 3, h, w), the flow (B, 2, h, w) and its validity (B, h, w), of a batch
        part: bwd_1 gives frame t-1 and the flow t -> t-1; bwd_1_at_m1 frame t-2 and the flow t-1 -> t-2."""
        frame = part["image"][:, self.offsets[name].index(pair_offsets(pair)[1])]
        return Partner(frame, part[f"flow/{pair}"], part[f"valid/{pair}"])

    def two_frame(self, part: dict, name: str) -> Partner | None:
        """A two-frame (ACCEL) student's partner for frame t of a batch part; None for a single-frame one."""
        return None if self.accel is None else self.partner_of(part, name, pair_for(self.accel, name))

    def losses(self, net, batch: dict, it: int, amp):
        a, src, tgt = self.adapt, batch["source"], batch["target"]
        xs, ys, xt = src["image"][:, 0], src["label"], tgt["image"][:, 0]
        src_partner, tgt_partner = self.two_frame(src, "source"), self.two_frame(tgt, "target")

        loss, out = student_loss(net, xs, ys, None, self.detail_weight, amp, src_partner)
        terms = {"source": loss}
        if self.fd is not None:
            terms["fd"] = self.fd.loss(out.features, out.feature_input, ys, amp)
        yield terms

        conf_t, pl, pw = self.pseudo_label(xt, tgt_partner, tgt.get("margin"), amp)
        # the batch's confident share (before margins); a tensor, read only when logged (no sync per step)
        self.stats = {"pseudo_weight": pw.max().detach()}

        if a.refine is None or it >= a.refine.start_iter:
            y_t, w_t = (pl, pw) if a.refine is None else self.refined_label(conf_t, pl, pw, tgt, amp)
            yield {"mix": self.mix_loss(net, src, tgt, ys, y_t, w_t, src_partner, tgt_partner, amp)}

        if a.mic is not None:
            x_aug = strong_augment(xt, a.augment, a.mic.augment_draws) if a.augment is not None else xt
            keep = block_mask(len(xt), xt.shape[-2:], a.mic.block, a.mic.mask_ratio, xt.device, grid=a.mic.grid)
            yield {"mic": a.mic.weight * student_loss(net, x_aug * keep, pl, pw, self.detail_weight, amp,
                                                      tgt_partner)[0]}

        if self.adversary is not None:
            with torch.no_grad():
                judged_source = self.judged_logits(net, src, "source", amp)
            logits_t, logits_k = self.judged_logits(net, tgt, "target", amp)
            self.adversary.judge(judged_source, (logits_t, logits_k))
            yield {"adv": self.adversary.generator_loss(logits_t, logits_k)}

    def pseudo_label(self, x: torch.Tensor, partner: Partner | None, margin: torch.Tensor | None,
                     amp) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The teacher's confidence, label (B, H, W) and weight (the global batch's confident share x margins) of
        this process's images (B, 3, H, W), predicted with the global batch."""
        d = self.dist
        if partner is not None and d.world > 1:
            partner = Partner(d.everyone(partner.other), d.everyone(partner.flow), d.everyone(partner.valid))
        with amp():
            logits = self.teacher.predict(d.everyone(x), partner)
        conf, label = class_probs(logits, x.shape[-2:]).max(1)  # upsampled and softmaxed once
        share = confident_share(conf, self.adapt.pseudo_threshold)
        conf, label = d.mine(conf), d.mine(label)
        weight = share * torch.ones_like(conf)
        return conf, label, weight if margin is None else weight * margin

    def refined_label(self, conf_t: torch.Tensor, label_t: torch.Tensor, pw: torch.Tensor, tgt: dict,
                      amp) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's pseudo-label of t (its confidence `conf_t` and label `label_t`, (B, H, W)) and weight
        `pw` refined with its prediction of t+k warped to t: the label of frame t+k and its own weight (confident
        share x margins) travel through the flow. Frame t+k is predicted in a call of its own, single-frame
        (also for ACCEL: t+2k is not loaded), as the reference's second `get_pl` did."""
        r, d = self.adapt.refine, self.dist
        partner = self.partner_of(tgt, "target", r.pair)
        with amp():
            logits_k = self.teacher.predict(d.everyone(partner.other))
        probs_k = class_probs(logits_k, partner.flow.shape[-2:])
        share_k = confident_share(probs_k.max(1)[0], self.adapt.pseudo_threshold)
        probs_k = d.mine(probs_k)
        pw_k = share_k * torch.ones_like(probs_k[:, 0])
        pw_k = pw_k if tgt.get("margin") is None else pw_k * tgt["margin"]
        warped, ok = warp(torch.cat([probs_k, pw_k[:, None]], 1), partner.flow, partner.valid, mode="nearest")
        conf_k, label_k = warped[:, :-1].max(1)
        label, weight = refine(r.strategy, label_t, conf_t, pw, label_k, conf_k, warped[:, -1], ok, r.invalid,
                               r.weight, tgt.get("label"))
        self.stats["refine_kept"] = (label != IGNORE).float().mean().detach()
        return label, weight

    def mix_loss(self, net, src, tgt, ys, y_t, pw, src_partner: Partner | None, tgt_partner: Partner | None,
                 amp) -> torch.Tensor:
        a, xs, xt = self.adapt, src["image"][:, 0], tgt["image"][:, 0]
        partner = tgt_partner
        m = MIXES[a.mix](ys, a)
        if m is not None:
            x_mix, y_mix, w_mix = mix(m, xs, xt), mix(m, ys, y_t), mix(m, torch.ones_like(pw), pw)
            if a.consistent_mix:  # frame t+k and the flow follow the same mask
                partner = Partner(*(mix(m, getattr(src_partner, k), getattr(tgt_partner, k))
                                    for k in ("other", "flow", "valid")))
        else:  # no mixing: the target alone
            x_mix, y_mix, w_mix = xt, y_t, pw
        if a.augment is not None:
            if partner is not None and a.augment.frames == "shared":  # both frames of an image: one draw
                both = strong_augment(torch.stack([x_mix, partner.other], 1), a.augment)
                x_mix, partner = both[:, 0], Partner(both[:, 1], partner.flow, partner.valid)
            else:
                x_mix = strong_augment(x_mix, a.augment)
                if partner is not None:  # frame t+k in a call of its own: every draw its own
                    partner = Partner(strong_augment(partner.other, a.augment), partner.flow, partner.valid)
        return student_loss(net, x_mix, y_mix, w_mix, self.detail_weight, amp, partner)[0]

    def judged_logits(self, net, part: dict, name: str, amp) -> tuple[torch.Tensor, torch.Tensor]:
        """The student's logits of frames t and t+k (the video discriminator's pair) of a batch part, resized to
        the discriminator's input size (`adapt.video_disc.scale` x the crop): two (B, C, h, w). A two-frame
        student under `judge: fused` gives its fused logits, each frame with its own partner; each frame goes
        through a forward of its own (`forwards: separate`) or both through one (`joint`)."""
        vd = self.adapt.video_disc
        pair = pair_for(vd, name)
        x_t, x_k = part["image"][:, 0], self.partner_of(part, name, pair).other
        p_t = p_k = None
        if self.accel is not None and vd.judge == "fused":
            accel_pair = pair_for(self.accel, name)
            p_t = self.partner_of(part, name, accel_pair)
            p_k = self.partner_of(part, name, partner_pair(accel_pair, pair_offsets(pair)[1]))
        with amp():
            if vd.forwards == "separate":
                logits = [net(x_t, p_t).logits, net(x_k, p_k).logits]
            else:
                both = None if p_t is None else Partner(*(torch.cat([getattr(p_t, k), getattr(p_k, k)])
                                                          for k in ("other", "flow", "valid")))
                logits = net(torch.cat([x_t, x_k]), both).logits.chunk(2)
        size = self.adversary.input_size(x_t.shape[-2:])
        return tuple(F.interpolate(lg.float(), size=size, mode="bilinear", align_corners=False) for lg in logits)

    def after_step(self, model: torch.nn.Module, it: int) -> None:
        self.teacher.update(model, it + 1)

    def state_dict(self) -> dict:
        state = {"teacher": self.teacher.model.state_dict()}
        if self.adversary is not None:
            state["discriminator"] = self.adversary.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.teacher.model.load_state_dict(state["teacher"])
        if self.adversary is not None:
            self.adversary.load_state_dict(state["discriminator"])
