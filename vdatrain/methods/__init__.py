"""Training methods: what one iteration computes from a batch. The loop in `vdatrain.train` is shared.

A method has `losses(model, batch, it, amp)`, a generator of loss groups
`{name: scalar}`, one per forward pass: the loop back-propagates each group's sum
before asking for the next, so one graph is alive at a time (`amp()` is the
autocast context for forwards); `stats`, a dict of scalars (numbers or 0-d tensors) logged with the losses;
`after_step(model, it)` (e.g. an EMA teacher update); and
`state_dict()` / `load_state_dict()` for what it keeps across iterations.
"""

from __future__ import annotations

from vdatrain.methods.self_training import SelfTraining
from vdatrain.methods.supervised import Supervised


def build_method(recipe, model):
    """The method a recipe asks for: self-training with its `adapt` section, else supervised training."""
    return SelfTraining(recipe, model) if recipe.adapt is not None else Supervised(recipe, model)
