"""The README and docs/ speak to users: no internal issue numbers, no links to files outside the repository,
and every relative link points at a file that exists."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_document_names_no_issue_numbers_and_links_only_inside_the_repository(doc):
    text = doc.read_text()
    issues = [m.group(0) for m in re.finditer(r"\bissues? #?[0-9]+", text, re.IGNORECASE)]
    assert not issues, f"{doc.name}: internal issue numbers {issues[:5]}"
    assert "../shared" not in text, f"{doc.name}: points at a file outside the repository"
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):  # a web address or an anchor
            continue
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{doc.name}: link {target} leaves the repository"
        assert path.exists(), f"{doc.name}: link {target}: no such file"
