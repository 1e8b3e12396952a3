#!/usr/bin/env python3
"""Write a JSONL retrieval corpus from the documentation on a Debian machine.

Each line is ``{"id", "title", "text"}``: a passage of a few hundred words at
most. Sources, best first:

    dpkg       descriptions of the installed packages (/var/lib/dpkg/status)
    man        English man pages (/usr/share/man/man*/), split by section
    doc        README and NEWS files under /usr/share/doc/
    changelog  Debian changelog entries (/usr/share/doc/*/changelog.Debian.gz)
    apt        one-line descriptions of every package apt knows (``apt-cache dumpavail``)

The rag image runs this at build time for its demo corpus; on a host it makes
bigger corpora for benchmarks::

    python images/rag/make_demo_corpus.py --out /tmp/corpus.jsonl --min-passages 100000

Standard library only (it runs on the image's Debian python3).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

SOURCES = ("dpkg", "man", "doc", "changelog", "apt")
PASSAGE_CHARS = 900
MIN_PASSAGE_CHARS = 60
# Sections that are lists of names and addresses rather than prose about the tool.
_SKIPPED_MAN_SECTIONS = {"AUTHOR", "AUTHORS", "COPYRIGHT", "REPORTING BUGS", "COLOPHON", "SEE ALSO"}

Passage = dict[str, str]


# -- package descriptions -------------------------------------------------------------


def parse_control(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a Debian control file (dpkg status, apt's package lists)."""
    fields: dict[str, str] = {}
    name = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, name = {}, ""
        elif line[0] in " \t" and name:
            fields[name] += "\n" + line
        elif ":" in line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    if fields:
        yield fields


def package_passage(fields: dict[str, str], prefix: str) -> Passage | None:
    """One passage for a package stanza: its name, summary and long description."""
    package = fields.get("Package")
    description = fields.get("Description")
    if not package or not description:
        return None
    summary, _, long = description.partition("\n")
    paragraphs: list[str] = []
    current: list[str] = []
    for line in long.splitlines():
        line = line.strip()
        if line == ".":
            paragraphs.append(" ".join(current))
            current = []
        elif line:
            current.append(line)
    paragraphs.append(" ".join(current))
    body = " ".join(p for p in paragraphs if p)
    # No section or homepage: words in every passage only blur the ranking.
    text = f"{package}: {summary}. {body}".strip()
    return {"id": f"{prefix}/{package}", "title": f"{package}: {summary}", "text": text}


def dpkg_passages(root: Path) -> Iterator[Passage]:
    """The installed packages' descriptions."""
    status = root / "var/lib/dpkg/status"
    try:
        text = status.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    for fields in parse_control(text):
        if "installed" not in fields.get("Status", "").split():
            continue
        passage = package_passage(fields, "pkg")
        if passage is not None:
            yield passage


def apt_passages(root: Path) -> Iterator[Passage]:
    """Every package apt knows (usually only its one-line summary)."""
    if root != Path("/"):
        return
    try:
        result = subprocess.run(
            ["apt-cache", "dumpavail"], capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    for fields in parse_control(result.stdout):
        passage = package_passage(fields, "apt")
        if passage is not None:
            yield passage


# -- man pages ------------------------------------------------------------------------

_ESCAPES = [
    (re.compile(r"\\\".*$"), ""),  # comment to end of line
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), ""),  # string interpolation
    (re.compile(r"\\[nk](?:\[[^\]]*\]|\(..|.)"), ""),  # registers, marks
    (re.compile(r"\\[hvwlLxbDoHSRZ]'[^']*'"), ""),  # motions and other drawing
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((oq|cq|aq)"), "'"),
    (re.compile(r"\\\(bu"), "*"),
    (re.compile(r"\\\(co"), "(c)"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),  # other special characters
    (re.compile(r"\\[-]"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\[&|^%c:)!{}acdprtuz]"), ""),
    (re.compile(r"\\(.)"), r"\1"),
]
# Requests that carry no text worth keeping.
_SILENT_REQUEST_NAMES = """
    TH Dd Dt Os ds nr if ie el so tr ta ft ps vs ne in ti na ad hy nh ll mk rm rn as ns
    rs ev cc c2 ec eo lf pc pl po fi nf EX EE UR UE MT ME RE RS PD DT UC AT hw Bl El Bd
    Ed Bk Ek Rs Re An Ud cu ul IX bp Vb Ve Ip Ss Xr
"""
_SILENT_REQUESTS = frozenset(_SILENT_REQUEST_NAMES.split())
_BREAK_REQUESTS = {"PP", "P", "LP", "sp", "br", "Pp", "Lp", "TP", "TQ", "IP", "HP", "It", "Sp"}
_SECTION_REQUESTS = {"SH", "Sh"}


def _unescape(text: str) -> str:
    for pattern, replacement in _ESCAPES:
        text = pattern.sub(replacement, text)
    return text


def _request_args(args: str) -> str:
    # Macro arguments may be quoted; alternating-font macros (.BR) just join words.
    parts = re.findall(r'"([^"]*)"|(\S+)', args)
    return " ".join(quoted or bare for quoted, bare in parts)


def man_sections(source: str) -> list[tuple[str, list[str]]]:
    """(section name, paragraphs) of roff man page source, as plain text."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    paragraph: list[str] = []
    skipping_definition = False

    def end_paragraph() -> None:
        if paragraph:
            text = " ".join(" ".join(paragraph).split())
            if text:
                sections[-1][1].append(text)
            paragraph.clear()

    for raw in source.splitlines():
        if skipping_definition:
            if raw.startswith(".."):
                skipping_definition = False
            continue
        if raw.startswith((".", "'")):
            request, _, args = raw[1:].strip().partition(" ")
            if request in ("de", "de1", "am", "ig"):
                skipping_definition = True
                continue
            if request in _SECTION_REQUESTS:
                end_paragraph()
                sections.append((_unescape(_request_args(args)).strip().upper(), []))
            elif request in _BREAK_REQUESTS:
                end_paragraph()
                if args and request in ("IP", "It"):
                    paragraph.append(_unescape(_request_args(args)))
            elif request in _SILENT_REQUESTS or request.startswith('\\"'):
                continue
            elif args:
                paragraph.append(_unescape(_request_args(args)))
            continue
        line = _unescape(raw).strip()
        if line:
            paragraph.append(line)
        else:
            end_paragraph()
    end_paragraph()
    return [(name, paragraphs) for name, paragraphs in sections if paragraphs]


def chunk_paragraphs(paragraphs: Iterable[str], size: int = PASSAGE_CHARS) -> Iterator[str]:
    """Paragraphs packed into passages of at most about `size` characters.

    A passage ends at a paragraph's end once it is reasonably long, else
    between words when the next word would overflow it.
    """
    words: list[str] = []
    length = 0
    for paragraph in paragraphs:
        for word in paragraph.split():
            if words and length + 1 + len(word) > size:
                yield " ".join(words)
                words, length = [], 0
            length += len(word) + (1 if words else 0)
            words.append(word)
        if length >= size * 0.6:
            yield " ".join(words)
            words, length = [], 0
    if words:
        yield " ".join(words)


def man_passages(root: Path) -> Iterator[Passage]:
    """English man pages, one passage per section chunk."""
    for section_dir in sorted((root / "usr/share/man").glob("man[1-8]")):
        for path in sorted(section_dir.iterdir()):
            if path.is_symlink() or not path.is_file():
                continue
            name, _, rest = path.name.partition(".")
            section = rest.split(".")[0] or section_dir.name[3:]
            try:
                raw = _read_text(path)
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
            if raw.lstrip().startswith(".so "):
                continue  # an alias of another page
            sections = man_sections(raw)
            purpose = ""
            for heading, paragraphs in sections:
                if heading in ("NAME", "NOMBRE"):
                    purpose = " ".join(paragraphs)
                    break
            _, dash, summary = purpose.partition(" - ")
            title = f"{name}({section})" + (f": {summary.strip()}" if dash else "")
            number = 0
            for heading, paragraphs in sections:
                if heading in _SKIPPED_MAN_SECTIONS or heading in ("NAME", "NOMBRE"):
                    continue
                for chunk in chunk_paragraphs(paragraphs):
                    number += 1
                    label = heading.title() if heading else "Text"
                    yield {
                        "id": f"man/{name}.{section}/{number}",
                        "title": title,
                        "text": f"{label}: {chunk}",
                    }
            if number == 0 and purpose:
                yield {"id": f"man/{name}.{section}/0", "title": title, "text": purpose}


# -- /usr/share/doc ---------------------------------------------------------------------


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def changelog_passages(root: Path) -> Iterator[Passage]:
    """Debian changelog entries: what changed in each packaged version."""
    heading = re.compile(r"^(\S+) \(([^)]+)\) [^;]*;")
    for path in sorted((root / "usr/share/doc").glob("*/changelog.Debian.gz")):
        try:
            text = _read_text(path)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        package, version = "", ""
        lines: list[str] = []
        for line in [*text.splitlines(), ""]:
            match = heading.match(line)
            if match or line.startswith(" -- "):
                body = " ".join(" ".join(lines).split())
                if package and len(body) >= MIN_PASSAGE_CHARS:
                    for number, chunk in enumerate(chunk_paragraphs([body]), start=1):
                        suffix = "" if number == 1 else f"/{number}"
                        yield {
                            "id": f"changelog/{package}/{version}{suffix}",
                            "title": f"{package} {version} (Debian changelog)",
                            "text": chunk,
                        }
                lines = []
                if match:
                    package, version = match.group(1), match.group(2)
                continue
            stripped = line.strip().lstrip("*+-").strip()
            if stripped and not stripped.startswith("["):
                lines.append(stripped if stripped.endswith((".", ":", ";")) else stripped + ".")


def doc_passages(root: Path) -> Iterator[Passage]:
    """README and NEWS files, in paragraph chunks."""
    for path in sorted((root / "usr/share/doc").glob("*/*")):
        base = path.name.split(".")[0].upper()
        if base not in ("README", "NEWS") or not path.is_file():
            continue
        if path.suffix not in ("", ".gz", ".txt", ".md", ".Debian", ".rst"):
            continue
        try:
            text = _read_text(path)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if "\0" in text:
            continue
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
        package = path.parent.name
        for number, chunk in enumerate(chunk_paragraphs(p for p in paragraphs if p), start=1):
            if len(chunk) >= MIN_PASSAGE_CHARS:
                yield {
                    "id": f"doc/{package}/{path.name}/{number}",
                    "title": f"{package}: {path.name}",
                    "text": chunk,
                }


# -- assembling --------------------------------------------------------------------------

_READERS = {
    "dpkg": dpkg_passages,
    "man": man_passages,
    "doc": doc_passages,
    "changelog": changelog_passages,
    "apt": apt_passages,
}


def collect(root: Path, sources: Iterable[str]) -> dict[str, list[Passage]]:
    """The passages of each source, without repeated texts or ids."""
    seen_text: set[bytes] = set()
    seen_id: set[str] = set()
    found: dict[str, list[Passage]] = {}
    for source in sources:
        kept = found.setdefault(source, [])
        for passage in _READERS[source](root):
            digest = hashlib.blake2b(passage["text"].encode(), digest_size=12).digest()
            if digest in seen_text or passage["id"] in seen_id:
                continue
            seen_text.add(digest)
            seen_id.add(passage["id"])
            kept.append(passage)
    return found


def select(found: dict[str, list[Passage]], limit: int | None) -> list[Passage]:
    """All passages, or `limit` of them: the first source whole, the rest evenly sampled."""
    sources = list(found)
    if not sources:
        return []
    first = found[sources[0]]
    rest = [p for source in sources[1:] for p in found[source]]
    if limit is None or len(first) + len(rest) <= limit:
        return first + rest
    first = first[:limit]
    room = limit - len(first)
    step = len(rest) / room if room else 0
    return first + [rest[int(i * step)] for i in range(room)]


def main(argv: list[str] | None = None) -> int:
    """Write the corpus; exit status 1 when fewer than --min-passages were found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSONL file to write")
    parser.add_argument("--root", default="/", help="the file system to read (default /)")
    parser.add_argument(
        "--sources",
        default=",".join(SOURCES),
        help=f"comma-separated, best first (default {','.join(SOURCES)})",
    )
    parser.add_argument("--min-passages", type=int, default=0, help="fail below this many")
    parser.add_argument("--max-passages", type=int, default=None, help="sample down to this")
    args = parser.parse_args(argv)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        parser.error(f"unknown sources: {', '.join(unknown)}")

    found = collect(Path(args.root), sources)
    counts = ", ".join(f"{source} {len(found[source])}" for source in sources)
    passages = select(found, args.max_passages)
    if len(passages) < args.min_passages:
        print(
            f"only {len(passages)} passages ({counts}); wanted {args.min_passages}: "
            "install more documented packages or add sources",
            file=sys.stderr,
        )
        return 1
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as out:
        for passage in passages:
            out.write(json.dumps(passage, ensure_ascii=False) + "\n")
    print(f"wrote {len(passages)} passages to {args.out} (found: {counts})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
