"""Reading a recipe: find the file, resolve its `base:` parents, apply `--set` overrides, build and check.

A recipe file may start from others: `base: NAME` or `base: [NAME, NAME, ...]`, merged in
order (each mapping key by key over the previous, lists and scalars replaced), then this
file's own keys over them. A name is a file beside this one (`other.yaml`), a shipped
recipe (`dlv2-hrda-viper-cs`) or a shipped piece (`shift/viper-cs`, `arch/dlv2`,
`method/mic`: the files under `vdatrain/recipes/pieces/`, which state one shift, one
architecture or one method part each and are not recipes on their own). The shipped
paper recipes are composed so: each file states only what is its own.

`name` is never inherited: a recipe is called what its file says, else its file's stem.

Paths in a recipe (`data_root`, the folder store paths are relative to; `model.pretrained`;
`model.init`) never depend on the current folder, except on the command line: an absolute path is
itself; a relative one is relative to the folder of the recipe file that sets it, or for the
shipped recipes and pieces to the data home (`$VDATRAIN_DATA`, default `~/vdatrain-data`: the
paper recipes read `<data home>/stores` and `<data home>/weights`, the demos
`<data home>/demo/stores`); `--set data_root=DIR` is relative to the current folder. A recipe file
that no file gives a `data_root` reads its stores beside itself.

`imports:` lists the user's own modules (importable module names, or `.py` files relative to the
recipe file) that register models, refinement strategies, mixes or weight formats; they are
imported before the recipe is validated, so their names check like the shipped ones.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import zlib
from pathlib import Path

import yaml

from vdatrain.recipe.checks import model_checks, video_checks
from vdatrain.recipe.schema import Recipe, RecipeError, build

SHIPPED = Path(__file__).resolve().parent.parent / "recipes"
PIECES = SHIPPED / "pieces"
PIECE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)?")  # folder/name, nothing that climbs out


def data_home() -> Path:
    """Where the shipped recipes' relative `data_root` points: $VDATRAIN_DATA, else ~/vdatrain-data."""
    return Path(os.environ.get("VDATRAIN_DATA") or Path.home() / "vdatrain-data").expanduser().absolute()


PATH_KEYS = (("data_root",), ("model", "pretrained"), ("model", "init"))


def _absolute_paths(data: dict, recipe_file: Path) -> None:
    """The PATH_KEYS that `data` (one file's mapping) sets, made absolute in place."""
    for *parents, leaf in PATH_KEYS:
        node = data
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            node[leaf] = _absolute_path(node[leaf], recipe_file)


def _absolute_path(value, recipe_file: Path | None):
    """A path (`data_root`, weights) made absolute: relative to `recipe_file`'s folder (shipped files: the data home), or to
    the current folder when it came from the command line (`recipe_file` None). Non-strings are left to the
    schema, which names them."""
    if not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if recipe_file is None:
        return str(path.absolute())
    shipped = recipe_file.resolve().is_relative_to(SHIPPED)
    return str((data_home() if shipped else recipe_file.resolve().parent) / path)


def shipped_recipes() -> dict[str, Path]:
    """Recipes that come with the package, by name (file stem); pieces are not recipes."""
    return {p.stem: p for p in sorted(SHIPPED.glob("*.yaml"))}


def shipped_pieces() -> dict[str, Path]:
    """The shipped pieces recipes compose, by name (`shift/viper-cs`)."""
    return {str(p.relative_to(PIECES).with_suffix("")): p for p in sorted(PIECES.rglob("*.yaml"))}


def find_recipe(name_or_path) -> Path:
    """A recipe file, or the shipped recipe of that name (`vdatrain recipes` lists them)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_recipes()
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    raise RecipeError(f"{path}: recipe not found (not a file, nor one of the shipped recipes: "
                      f"see `vdatrain recipes`)")


def _find_base(name: str, beside: Path) -> Path:
    """A `base:` entry of the file `beside`: a file next to it, a shipped recipe, or a shipped piece."""
    for candidate in (beside.parent / name, beside.parent / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    if name in shipped_recipes():
        return shipped_recipes()[name]
    if PIECE_NAME.fullmatch(name) and (PIECES / f"{name}.yaml").is_file():
        return PIECES / f"{name}.yaml"
    raise RecipeError(f"base: {name!r} is not a file beside {beside.name}, a shipped recipe or a shipped piece "
                      f"(pieces: {', '.join(shipped_pieces())})")


def merge(base: dict, update: dict) -> dict:
    """`update` over `base`: mappings merge key by key, anything else (lists, null) replaces."""
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


MAX_BYTES = 1 << 20  # a recipe is a few kilobytes; nothing larger is parsed
MAX_ALIASES = 64  # YAML aliases a recipe may use (an alias bomb of a kilobyte expands to gigabytes)
MAX_BASES = 32  # depth of `base:` chains


class RecipeLoader(yaml.SafeLoader):
    """YAML as recipes are written: numbers in every common spelling (`6e-5`, `1e12`, `1.0e12`, `6.0e-05`; YAML
    1.1 wants a dot and a signed exponent, so PyYAML read `6e-5` as a string), at most `MAX_ALIASES` aliases."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} aliases (an alias bomb?)")
        return super().compose_node(parent, index)


RecipeLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$|^[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."))


def parse_yaml(text: str):
    """One YAML document through `RecipeLoader`, a SafeLoader: plain data only, a tag naming a Python object is
    an error (what `yaml.safe_load` does, with the recipe's number rule and alias limit)."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict:
    if path.stat().st_size > MAX_BYTES:
        raise RecipeError(f"{path}: {path.stat().st_size} bytes; a recipe is a small YAML file (at most {MAX_BYTES})")
    try:
        data = parse_yaml(path.read_bytes().decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not a text file (a recipe is YAML)") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML ({str(e).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections")
    return data


def read_recipe_data(path, seen: tuple = ()) -> dict:
    """The YAML mapping of a recipe file with its `base` parents merged in (their names dropped)."""
    path = Path(path) if seen else find_recipe(path)
    if path.resolve() in seen:
        raise RecipeError(f"{path}: base: recipes include each other")
    if len(seen) >= MAX_BASES:
        raise RecipeError(f"{path}: base: a chain of more than {MAX_BASES} recipes")
    data = _read_yaml(path)
    _absolute_paths(data, path)
    parents = data.pop("base", [])
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise RecipeError(f"{path}: base: expected a recipe or piece name, or a list of them, got {parents!r}")
    merged: dict = {}
    for parent in parents:
        try:
            inherited = read_recipe_data(_find_base(parent, path), (*seen, path.resolve()))
        except RecipeError as e:
            raise RecipeError(f"{path}: {e}" if str(e).startswith("base:") else f"{path}: base: {e}") from None
        inherited.pop("name", None)  # a recipe is named by its own file
        merged = merge(merged, inherited)
    return merge(merged, data)


def apply_override(data: dict, assignment: str) -> None:
    """'train.iters=100' -> data["train"]["iters"] = 100 (the value parsed as YAML)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: write key=value (e.g. train.iters=100)")
    key, raw = assignment.split("=", 1)
    try:
        value = parse_yaml(raw)
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {key.strip()}: {raw[:80]!r} is not a YAML value ({str(e).splitlines()[0][:200]})") \
            from None
    *parents, leaf = key.strip().split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {p} is not a section")
    node[leaf] = _absolute_path(value, None) if tuple(key.strip().split(".")) in PATH_KEYS else value


def merged_recipe_data(path, overrides: list[str] = ()) -> dict:
    """What `load_recipe` validates: the file with its parents, its name, and the overrides applied."""
    path = find_recipe(path)
    data = read_recipe_data(path)
    data.setdefault("name", path.stem)
    data.setdefault("data_root", _absolute_path(".", path))
    for assignment in overrides:
        apply_override(data, assignment)
    return data


def import_extensions(names, recipe_file: Path) -> None:
    """Import each of `names` (the recipe's `imports`) once per process: a dotted module name, or a `.py` file
    (relative to the recipe's folder). Errors name the entry."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise RecipeError(f"imports: expected a list of module names or .py files, got {names!r}")
    for name in names:
        try:
            if name.endswith(".py"):
                path = (recipe_file.parent / name).resolve()
                key = f"vdatrain_user_{path.stem}_{zlib.crc32(str(path).encode()):08x}"  # one module per file
                if key in sys.modules:
                    continue
                if not path.is_file():
                    raise RecipeError(f"imports: {name}: file not found (looked at {path})")
                spec = importlib.util.spec_from_file_location(key, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[key] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[key]
                    raise
            else:
                importlib.import_module(name)
        except RecipeError:
            raise
        except ModuleNotFoundError as e:
            raise RecipeError(f"imports: {name}: no module named {e.name!r} (is it installed, or on PYTHONPATH?)") from None
        except Exception as e:  # noqa: BLE001 - the user's module failed while it was imported
            raise RecipeError(f"imports: {name}: importing it failed ({type(e).__name__}: {e})") from None


def load_recipe(path, overrides: list[str] = ()) -> Recipe:
    """Read (with its parents), override, validate; store paths come back joined to `data_root`."""
    path = find_recipe(path)
    data = merged_recipe_data(path, overrides)
    set_keys = tuple(f"{a.split('=', 1)[0].strip()}{end}" for a in overrides for end in (":", "[", "."))
    try:
        import_extensions(data.get("imports", []), path)
        recipe = build(Recipe, data, "")
    except RecipeError as e:  # a value that came from the command line is named as such, not as the file's
        raise RecipeError(f"--set {e}" if str(e).startswith(set_keys) and set_keys else f"{path}: {e}") from None
    for spec in (recipe.source, recipe.target, recipe.eval):
        if spec is not None:
            spec.store = str(Path(recipe.data_root) / spec.store)
    if recipe.adapt is not None and recipe.target is None:
        raise RecipeError(f"{path}: adapt: needs a target section (the unlabelled target data)")
    try:
        model_checks(recipe)
        video_checks(recipe)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}") from None
    return recipe
