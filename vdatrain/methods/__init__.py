"""Training methods: what one iteration computes from a batch, and what it needs from the loop.

The loop in `vdatrain.train` is shared and names no part. A method has
- `losses(model, batch, it, amp)`: a generator of loss groups `{name: scalar}`, one per forward
  pass, for the model's optimiser; the loop back-propagates each group's sum before asking for
  the next, so one graph is alive at a time (`amp()` is the autocast context for forwards);
- `group_count(it)`: how many groups `losses` yields at iteration `it` (the loop lets DDP all-reduce
  the gradients once, after the last group's backward);
- `optimizers`: the `vdatrain.optim.PartOptimizer`s its parts bring besides the model's (the video
  discriminator's); the loop steps each after the model's step, with its own schedule;
- `after_step(model, it)`: after every optimiser stepped (e.g. the EMA teacher's update);
- `sample_options(part)`: what the data of "source" or "target" must provide (`labels`, the rare
  class crop rule), and `source_chooser(samples, seed)`: a sampler of source items (rare class
  sampling) or None;
- `stats`: scalars (numbers or 0-d tensors) logged with the losses;
- `state_dict()` / `load_state_dict()`: what it keeps across iterations (checkpointed).
"""

from __future__ import annotations

from vdatrain.methods.self_training import SelfTraining
from vdatrain.methods.supervised import Supervised


def build_method(recipe, model, dist=None):
    """The method a recipe asks for: self-training with its `adapt` section, else supervised training. `dist`:
    the run's processes (`vdatrain.distributed.Dist`; one process when None)."""
    return SelfTraining(recipe, model, dist) if recipe.adapt is not None else Supervised(recipe, model, dist)
