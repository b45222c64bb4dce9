"""The README stays a first page, and no link in the documentation points nowhere.

- README.md is at most ~10 kB: details live in docs/, one page per subject;
- its first two shell commands are ``python3 dev.py demo`` and ``python3 dev.py test``
  (CI runs the second one, .ci/run);
- every docs/*.md page is linked from the README;
- every relative link in README.md, docs/*.md and examples/*/README.md names a file that
  exists, and an anchor into a Markdown file names one of its headings (GitHub's slugs).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.conftest import ROOT

README = ROOT / "README.md"
README_MAX_BYTES = 10 * 1024
FIRST_COMMANDS = [["python3", "dev.py", "demo"], ["python3", "dev.py", "test"]]
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell|console)\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def documents() -> list[Path]:
    return [
        README,
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted(ROOT.glob("examples/*/README.md")),
    ]


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where nothing is a link or heading."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` that name no file, or no heading of their file."""
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{path.name}: {target} (no such heading in {dest.name})")
    return broken


def shell_commands(text: str) -> list[list[str]]:
    """Every command line of the text's shell blocks, in order, without comments."""
    commands = []
    for block in SHELL_BLOCK.findall(text):
        for line in block.splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def test_the_readme_is_a_first_page() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes: move details into docs/"


def test_the_readme_starts_with_the_demo_and_the_test_command() -> None:
    assert shell_commands(README.read_text())[:2] == FIRST_COMMANDS


def test_the_readme_links_every_docs_page() -> None:
    linked = {target.partition("#")[0] for target in LINK.findall(prose(README.read_text()))}
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert not pages - linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def test_every_relative_link_points_to_a_file_and_heading() -> None:
    broken = [problem for path in documents() for problem in broken_links(path)]
    assert not broken, "\n".join(broken)


def test_the_checks_above_see_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Work groups (v1.2: port 5560)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Same\n\n## Same\n\n"
        "[ok](other.md) [ok](other.md#work-groups-v12-port-5560) [ok](#same-1) "
        "![ok](other.md) [web](https://example.com/x.md) `[code](missing.md)`\n"
        "[gone](missing.md) [no heading](other.md#nowhere) [no heading](#title-1)\n"
        "```sh\npython3 dev.py demo   # a comment\n[fenced](missing.md)\n```\n"
        "```sh\n# only a comment\npython3 dev.py test\n```\n"
    )
    assert broken_links(page) == [
        "page.md: missing.md (no such file)",
        "page.md: other.md#nowhere (no such heading in other.md)",
        "page.md: #title-1 (no such heading in page.md)",
    ]
    assert shell_commands(page.read_text()) == [
        ["python3", "dev.py", "demo"],
        ["[fenced](missing.md)"],
        ["python3", "dev.py", "test"],
    ]
    assert slug("Broker (`framebroker broker`)") == "broker-framebroker-broker"
    assert slug("6. Work groups") == "6-work-groups"
