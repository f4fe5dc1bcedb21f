"""Layout patterns such as ``{split}/img/{seq:03d}/{seq:03d}_{frame:05d}.jpg``: glob, match and format."""

from __future__ import annotations

import re
import string


class Pattern:
    def __init__(self, fmt: str):
        self.fmt = fmt
        self.fields: list[tuple[str, str, str]] = []  # (literal before, field name, format spec)
        for literal, name, spec, _ in string.Formatter().parse(fmt):
            self.fields.append((literal, name, spec or ""))
        regex, seen = "", {}
        for literal, name, spec in self.fields:
            regex += re.escape(literal)
            if name is None:
                continue
            digits = re.fullmatch(r"0?(\d+)d", spec)
            body = rf"\d{{{digits.group(1)}}}" if digits else r"\d+" if spec.endswith("d") else r"[^/]+"
            group = name if name not in seen else f"{name}__{seen[name]}"
            seen[name] = seen.get(name, 0) + 1
            regex += f"(?P<{group}>{body})"
        self._regex = re.compile(regex + r"\Z")
        self._ints = {name for _, name, spec in self.fields if name and spec.endswith("d")}

    def glob(self, **fixed) -> str:
        """A glob for `Path.glob`: fixed fields substituted, the others '*'."""
        out = ""
        for literal, name, spec in self.fields:
            out += literal
            if name is not None:
                out += format(fixed[name], spec) if name in fixed else "*"
        return out

    def match(self, relpath: str) -> dict | None:
        """Fields of a relative path, or None when it does not fit (or repeated fields disagree)."""
        m = self._regex.match(relpath)
        if not m:
            return None
        fields: dict = {}
        for group, value in m.groupdict().items():
            name = group.split("__")[0]
            value = int(value) if name in self._ints else value
            if fields.setdefault(name, value) != value:
                return None
        return fields

    def format(self, **fields) -> str:
        return self.fmt.format(**fields)
