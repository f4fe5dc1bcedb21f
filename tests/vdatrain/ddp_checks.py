"""Run under `torchrun --nproc-per-node 2` (gloo, CPU) by tests/vdatrain/test_distributed.py: one self-training
step of a narrow HRDA network on a synthetic global batch of 4, split over the processes. Rank 0 prints JSON:

- "teacher": the pseudo-labels, confidences and weights of the global batch (gathered from both processes),
  equal to one process's on the whole batch: the teacher predicts the global batch in every process;
- "grads": the largest difference between the gradients `train_step` gives (one all-reduce, after the last
  loss group; the earlier backwards under DDP's no_sync) and those of a backward per group each all-reduced.
"""

import copy
import json
from contextlib import nullcontext
from pathlib import Path

import torch

from vdatrain import distributed
from vdatrain.methods import build_method
from vdatrain.models import build_model
from vdatrain.optim import build_optimizer
from vdatrain.recipe import AdaptSpec, DataSpec, EvalSpec, HRDASpec, MICSpec, ModelSpec, OptimSpec, Recipe, TrainSpec
from vdatrain.run import Run, iteration_seed
from vdatrain.train import train_step

d = distributed.setup()
recipe = Recipe(name="ddp-checks", model=ModelSpec(name="deeplabv2_check", num_classes=5,
                                                   hrda=HRDASpec(detail_crop=(32, 32), detail_stride=(16, 16))),
                source=DataSpec(store="s"), target=DataSpec(store="t"), eval=EvalSpec(store="t"),
                adapt=AdaptSpec(augment=None, mic=MICSpec(block=8)),
                optim=OptimSpec(warmup_iters=0), train=TrainSpec(iters=10, batch_size=4, seed=5))
torch.manual_seed(0)
model = build_model("deeplabv2_check", 5, recipe.model.hrda)
single = build_method(recipe, copy.deepcopy(model))  # one process, the whole batch
net = distributed.wrap(model, d)
method = build_method(recipe, model, d)
reference = copy.deepcopy(method)  # for the step with an all-reduce per group

g = torch.Generator().manual_seed(1)
whole = {"source": {"image": torch.randn(4, 1, 3, 64, 64, generator=g),
                    "label": torch.randint(0, 5, (4, 64, 64), generator=g)},
         "target": {"image": torch.randn(4, 1, 3, 64, 64, generator=g) * 2}}
mine = {part: {k: d.mine(v) for k, v in b.items()} for part, b in whole.items()}

out = {}
with torch.no_grad():
    probs = torch.softmax(single.teacher.predict(whole["target"]["image"][:, 0]), 1).max(1)[0]
    for m in (single, method, reference):  # a threshold that about half the pixels reach: a share inside (0, 1)
        m.adapt.pseudo_threshold = probs.median().item()
    conf, label, weight = method.pseudo_label(mine["target"]["image"][:, 0], None, None, nullcontext)
    conf1, label1, weight1 = single.pseudo_label(whole["target"]["image"][:, 0], None, None, nullcontext)
    gathered = [d.everyone(t) for t in (conf, label, weight)]
out["teacher"] = {"labels_equal": torch.equal(gathered[1], label1),
                  "confidence_diff": (gathered[0] - conf1).abs().max().item(),
                  "weights_equal": torch.equal(gathered[2], weight1), "share": weight1.max().item()}

grads = {}
optimizer = build_optimizer(model, 6e-5, 0.01, 10.0, (0.9, 0.999))
optimizer.step = lambda: grads.setdefault("one_all_reduce", [p.grad.clone() for p in model.parameters()])
run = Run(recipe, Path("."), d, model, net, method, optimizer, batches=None, log=None, start=0)
train_step(run, mine, 3, nullcontext)

model.zero_grad(set_to_none=True)
torch.manual_seed(iteration_seed(recipe.train.seed, 3, d.rank))  # the same draws as train_step's
for terms in reference.losses(net, mine, 3, nullcontext):
    sum(terms.values()).backward()  # an all-reduce per group
grads["per_group"] = [p.grad.clone() for p in model.parameters()]
out["grads"] = {"max_diff": max((a - b).abs().max().item() for a, b in zip(*grads.values())),
                "max_grad": max(g.abs().max().item() for g in grads["per_group"]),
                "groups": method.group_count(3)}
if d.main:
    print(json.dumps(out))
distributed.teardown()
