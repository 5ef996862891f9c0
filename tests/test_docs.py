"""The README stays short, every link in the docs leads somewhere, and the configuration page is the code's."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from identity import config_reference

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`]*`")


def prose_lines(path: Path) -> list[str]:
    """The lines of a Markdown page outside code blocks (fenced, or indented by four spaces)."""
    out, fenced = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and not line.startswith("    "):
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (`_` and `-` kept), spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose_lines(path):
        match = re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            found.add(base if n == 0 else f"{base}-{n}")
            counts[base] = n + 1
    return found


def relative_links(path: Path) -> list[str]:
    links = []
    for line in prose_lines(path):
        links += [t for t in LINK.findall(CODE_SPAN.sub("", line)) if not re.match(r"[a-z]+:", t)]
    return links


def test_the_pages_have_links_to_check() -> None:
    """Guards the checker itself: a regex that matched nothing would pass every page."""
    assert len(relative_links(ROOT / "README.md")) >= 10
    assert "identity-search---json" in anchors(ROOT / "docs" / "json.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_the_readme_reads_in_five_minutes() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 220


def test_the_readme_keeps_the_two_set_up_commands() -> None:
    """.ci/run runs the line after the test-command marker; the main command is the first thing a user runs."""
    lines = (ROOT / "README.md").read_text().splitlines()
    for marker, words in (
        ("<!-- main-command -->", ("identity enroll", "identity search")),
        ("<!-- test-command -->", ("pytest",)),
    ):
        command = lines[lines.index(marker) + 1]
        assert command.startswith("    python3 -m venv .venv") and all(w in command for w in words), marker


def test_the_docs_index_lists_every_page() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    missing = [p.name for p in PAGES[1:] if p.name != "index.md" and f"]({p.name})" not in index]
    assert missing == []


def test_the_configuration_page_is_generated_from_settings() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == config_reference.render(), (
        f"docs/configuration.md is out of date with identity/config.py: run `{config_reference.COMMAND}`"
    )


def test_every_setting_has_its_variable_and_description_on_the_page() -> None:
    page = config_reference.render()
    entries = config_reference.entries(config_reference.Settings)
    for name, section in config_reference.sections():
        entries += config_reference.entries(section, (name,))
    assert len(entries) > 40 and {"IDENTITY_DATABASE_URL", "IDENTITY_API__METRICS_BIND"} <= {e.env for e in entries}
    for entry in entries:
        assert f"- `{entry.env}` (TOML `{entry.toml}`)" in page and f"  {entry.description}\n" in page, entry.env


@dataclass(frozen=True)
class _Commented:
    # the line above counts,
    documented: int = 1  # and so does the one beside it
    undocumented: int = 2


def test_a_setting_without_a_comment_stops_the_generator() -> None:
    comments = config_reference.field_comments(_Commented)
    assert comments["documented"] == "the line above counts, and so does the one beside it"
    assert comments["undocumented"] == ""
    with pytest.raises(LookupError, match="_Commented.undocumented has no comment"):
        config_reference.entries(_Commented)


def test_the_python_example_names_what_the_code_has() -> None:
    """design.md's "From Python" snippet: its imports resolve and the calls it makes take what it passes."""
    page = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    snippet = page.split("## From Python", 1)[1]
    code = "\n".join(line[4:] for line in snippet.splitlines() if line.startswith("    "))
    imports = "\n".join(line for line in code.splitlines() if line.startswith(("from ", "import ")))
    assert "search_image" in imports and "App" in imports, code
    names: dict[str, object] = {}
    exec(compile(imports, "design.md", "exec"), names)  # a moved module or a renamed name fails here
    assert list(inspect.signature(names["search_image"]).parameters)[:3] == ["app", "path", "options"]
    assert "must_exist" in inspect.signature(names["App"].open).parameters
