"""Every place a comment, docstring or document cites exists: a `docs/…` file, and the section it names, and the
README's sections (`README, "Two operators"`). A citation that leads nowhere is a false comment (README,
"Development")."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: `docs/gaap-api.md`, optionally followed by the section: `, "Rate limit"`, ` "Rate limit"` or `, section "…"`
DOCS_CITATION = re.compile(r'(docs/[\w.-]+\.md)(?:,?\s+(?:section\s+)?"([^"]+)")?')
README_CITATION = re.compile(r'README(?:\.md)?,?\s+"([^"]+)"')
#: a markdown heading, a paragraph's bold run-in heading (`**Two operators.** On one machine…`), or a list item's
#: italic one (`- *Verification waits for the truth.* A row…`)
HEADING = re.compile(r"^(?:#{1,6}\s+(.+?)\s*$|\*\*(.+?)\*\*|- \*([^*]+)\*)", re.MULTILINE)


def comment_text(path: Path) -> str:
    """The comments and string literals of a Python file (docstrings among them), joined and with comment markers
    and line breaks folded, so a citation wrapped over two comment lines reads as one."""
    parts = []
    for token in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if token.type == tokenize.COMMENT:
            parts.append(token.string.lstrip("#:").strip())
        elif token.type == tokenize.STRING:
            parts.append(token.string)
    return " ".join(" ".join(parts).split())


def cited_texts() -> dict[Path, str]:
    """What each source and document says, folded to single spaces."""
    sources = [path for folder in ("batchcert", "tests") for path in (ROOT / folder).rglob("*.py")]
    texts = {path: comment_text(path) for path in sources if path != Path(__file__).resolve()}
    for path in [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")]:
        texts[path] = " ".join(path.read_text(encoding="utf-8").split())
    return texts


def headings(path: Path) -> list[str]:
    found = HEADING.findall(path.read_text(encoding="utf-8"))
    return [" ".join("".join(groups).split()).lower() for groups in found]


def has_section(path: Path, section: str) -> bool:
    wanted = " ".join(section.split()).lower().rstrip(".")
    return any(heading.lstrip("0123456789. ").startswith(wanted) for heading in headings(path))


def test_every_cited_document_and_section_exists() -> None:
    missing = []
    for source, text in cited_texts().items():
        where = source.relative_to(ROOT)
        for document, section in DOCS_CITATION.findall(text):
            if not (ROOT / document).is_file():
                missing.append(f"{where}: {document}")
            elif section and "<" not in section and not has_section(ROOT / document, section):  # not "<heading>"
                missing.append(f'{where}: {document}, "{section}"')
        for section in README_CITATION.findall(text):
            if not has_section(ROOT / "README.md", section):
                missing.append(f'{where}: README, "{section}"')
    assert not missing, "citations that lead nowhere:\n" + "\n".join(sorted(set(missing)))


def test_the_check_finds_a_missing_section(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text("# Title\n\n## Rate limit\n\n**Two operators.** On one…\n- *Waits.* A row\n", encoding="utf-8")
    assert has_section(document, "Rate limit") and has_section(document, "Two operators")
    assert has_section(document, "Waits")
    assert not has_section(document, "Listener tasks")
    source = tmp_path / "m.py"
    source.write_text('x = 1  # see docs/gaap-api.md, "Listener\n# tasks"\n', encoding="utf-8")
    assert DOCS_CITATION.findall(comment_text(source)) == [("docs/gaap-api.md", "Listener tasks")]
