"""Recipes: YAML validated against a typed schema before anything runs.

`schema` (the dataclasses and the typed check), `load` (files, `base:` parents, `--set`
overrides), `checks` (cross-field and on-disk checks). A recipe is data: everything a run
does is in it, and `vdatrain recipes --show NAME` prints it merged.
"""

from vdatrain.recipe.checks import check_paths
from vdatrain.recipe.load import (find_recipe, load_recipe, merged_recipe_data, read_recipe_data, shipped_pieces,
                                  shipped_recipes)
from vdatrain.recipe.schema import (ACCELSpec, AdaptSpec, AugmentSpec, DataSpec, EvalSpec, FDSpec, HRDASpec, MICSpec,
                                    ModelSpec, OptimSpec, RCSSpec, Recipe, RecipeError, RefineSpec, TrainSpec,
                                    VideoDiscSpec)

__all__ = ["ACCELSpec", "AdaptSpec", "AugmentSpec", "DataSpec", "EvalSpec", "FDSpec", "HRDASpec", "MICSpec",
           "ModelSpec", "OptimSpec", "RCSSpec", "Recipe", "RecipeError", "RefineSpec", "TrainSpec", "VideoDiscSpec",
           "check_paths", "find_recipe", "load_recipe", "merged_recipe_data", "read_recipe_data", "shipped_pieces",
           "shipped_recipes"]
