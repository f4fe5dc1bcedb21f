"""Training methods: what one iteration computes from a batch. The loop in `vdatrain.train` is shared.

A method has `losses(model, batch, it) -> {name: scalar}` (summed and back-propagated
by the loop), `after_step(model, it)` (e.g. an EMA teacher update), and
`state_dict()` / `load_state_dict()` for what it keeps across iterations.
"""

from __future__ import annotations

from vdatrain.methods.supervised import Supervised


def build_method(recipe, model):
    """The method a recipe asks for: supervised training when it names no target."""
    return Supervised(model)
