"""Families of shipped recipes: which parts a recipe combines, on which shift geometry, and which recipes
to check so that every part and geometry is exercised.

    parts_of(recipe)   -> ("source", "hrda", "mix:classmix", "rcs", "fd", "mic", ...)
    shift_of(recipe)   -> "viper_train -> cityscapes-seq_val"
    select(patterns, families=False, cover=False) -> recipe names

`families` (`family_set`) takes one recipe of every distinct (architecture, parts) combination and then one more for each
(architecture, shift geometry) still missing: every combination at its real geometry (`make paper-check`,
before a release). `cover` (`covering_set`) takes the fewest recipes (greedily) such that every (architecture, part) and
every (architecture, shift geometry) of the shipped paper recipes is checked at least once: what CI runs.
For the cover, a refinement is two parts, its strategy and its direction (`refine:consistency`,
`refine-pair:bwd`), so each strategy and each direction is exercised without every pairing.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from vdatrain.recipe.load import load_recipe, shipped_recipes
from vdatrain.recipe.schema import Recipe, RecipeError

TARGET_STORES = ("cityscapes-seq", "bddvid")  # a supervised run on one of these is a target oracle


def parts_of(recipe: Recipe) -> tuple[str, ...]:
    """The recipe's combination of parts: what `select(families=True)` picks one recipe of."""
    m, a = recipe.model, recipe.adapt
    oracle = a is None and Path(recipe.source.store).name.startswith(TARGET_STORES)
    parts = ["oracle" if oracle else "source"] + (["hrda"] if m.hrda else []) + ([f"accel:{m.accel.pair}"] if m.accel else [])
    if a:
        parts += [f"mix:{a.mix}"] + [p for p in ("rcs", "fd", "mic") if getattr(a, p)]
        parts += ["consistent_mix"] if a.consistent_mix else []
        parts += [f"refine:{a.refine.strategy}:{a.refine.pair.split('_')[0]}"] if a.refine else []
        parts += ["video_disc"] if a.video_disc else []
    return tuple(parts)


def shift_of(recipe: Recipe) -> str:
    """'<source store> -> <eval store>' (names without .zarr): the geometry of a shift."""
    def name(store):
        return Path(store).name.removesuffix(".zarr")

    return f"{name(recipe.source.store)} -> {name(recipe.eval.store)}"


def architecture(recipe: Recipe) -> str:
    """The model's name, with the timm model of a timm backbone (`daformer_timm:vit_large_patch16_dinov3`)."""
    m = recipe.model
    return f"{m.name}:{m.backbone.timm}" if m.backbone else m.name


def cover_items(recipe: Recipe) -> set[tuple[str, str]]:
    """What checking `recipe` exercises: (architecture, part) for each part (a refinement as its strategy and
    its direction) and (architecture, "shift <geometry>")."""
    arch = architecture(recipe)
    items = {(arch, f"shift {shift_of(recipe)}")}
    for part in parts_of(recipe):
        if part.startswith("refine:"):
            _, strategy, direction = part.split(":")
            items |= {(arch, f"refine:{strategy}"), (arch, f"refine-pair:{direction}")}
        else:
            items.add((arch, part))
    return items


def paper_recipes() -> list[Recipe]:
    """The shipped recipes but the demos, validated."""
    return [load_recipe(n) for n in shipped_recipes() if not n.startswith("demo")]


def covering_set(recipes: list[Recipe]) -> list[str]:
    """Greedy set cover of `cover_items` over `recipes`: each pick exercises the most items not yet covered
    (ties: a recipe of the paper's code values before a `-paper-text` one, then the smaller, then by name)."""
    items = {r.name: cover_items(r) for r in recipes}
    todo = set().union(*items.values()) if items else set()
    picked: list[str] = []
    while todo:
        name = min(items, key=lambda n: (-len(items[n] & todo), n.endswith("-paper-text"), len(items[n]), n))
        picked.append(name)
        todo -= items[name]
    return picked


def family_set(recipes: list[Recipe]) -> list[str]:
    """One recipe of every distinct (architecture, parts) combination, each taking the shift geometry used least
    so far, then one more for each (architecture, shift geometry) still missing."""
    groups: dict[tuple, list[Recipe]] = {}
    for r in recipes:
        groups.setdefault((architecture(r), parts_of(r)), []).append(r)
    ordered = sorted(groups.items(), key=lambda kv: (kv[0][0], len(kv[0][1]), kv[0][1]))
    used: dict[tuple[str, str], int] = {}
    names: list[str] = []
    for (arch, _), group in ordered:
        pick = min(group, key=lambda r: (used.get((arch, shift_of(r)), 0), r.name))
        used[(arch, shift_of(pick))] = used.get((arch, shift_of(pick)), 0) + 1
        names.append(pick.name)
    for (arch, _), group in ordered:
        for r in group:  # a geometry no family took yet (the oracles' second target, say)
            if (arch, shift_of(r)) not in used:
                used[(arch, shift_of(r))] = 1
                names.append(r.name)
    return names


def select(patterns: list[str], families: bool = False, cover: bool = False) -> list[str]:
    """Recipe names and files from `patterns` (names, files, or globs over the shipped names), then with
    `families` one shipped paper recipe of every (architecture, parts) combination (`family_set`), or with
    `cover` the covering set (`covering_set`); each name once, in that order."""
    shipped = list(shipped_recipes())
    names: list[str] = []
    for p in patterns:
        hits = fnmatch.filter(shipped, p) if any(c in p for c in "*?[") else [p]
        if not hits:
            raise RecipeError(f"{p}: no shipped recipe matches (see `vdatrain recipes`)")
        names += [h for h in hits if h not in names]
    if families or cover:
        recipes = paper_recipes()
        names += [n for n in (family_set(recipes) if families else covering_set(recipes)) if n not in names]
    return names
