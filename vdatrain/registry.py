"""Plain name -> constructor tables, one per extension point, filled by a decorator beside each entry.

    MODELS = Registry("model", "model.name")

    @MODELS.register("deeplabv2_r101")
    def deeplabv2_r101(num_classes=19, checkpointing=False): ...

The recipe schema checks a name against its table before anything runs (`vdatrain.recipe.schema.OneOf`),
so an unknown name is a one-line error naming the recipe key. Nothing is discovered by magic: a table
holds what the modules that fill it registered when imported, and the package's `__init__` imports those.
"""

from __future__ import annotations

from typing import Callable


class Registry(dict):
    """name -> constructor; `kind` and `key` (the recipe key that selects one) make the errors readable."""

    def __init__(self, kind: str, key: str):
        super().__init__()
        self.kind, self.key = kind, key

    def register(self, name: str) -> Callable:
        """Decorator: add the decorated function or class under `name` (a name registered twice is a bug)."""
        def add(obj):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice ({self[name]!r} and {obj!r})")
            self[name] = obj
            return obj
        return add

    def get_or_raise(self, name: str):
        """The entry; an unknown name is a `RecipeError` naming the recipe key and the choices."""
        if name not in self:
            from vdatrain.recipe.schema import RecipeError

            raise RecipeError(f"{self.key}: {name!r} is not a registered {self.kind} (choose from {', '.join(self)})")
        return self[name]
