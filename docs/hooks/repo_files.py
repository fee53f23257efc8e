"""mkdocs hook: publish the repository files outside docs/ that a page links to.

docs/results.md shows the committed report figures as ../results/<grid>/report/*.png, a
relative link that works when the page is read on a git host. mkdocs only knows files inside
docs/, so this hook adds each such linked file to the site under repo/<path> and keeps its
source path as the link target: the same link then works in the built site too, and
`mkdocs build --strict` still fails on a link to a file that does not exist.

Only plain files inside the repository are published, never Markdown (a linked page outside
docs/ stays an error, so every page of the site is one of docs/).
"""
from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
PUBLISHED = "repo"  # the site folder the files go to


def linked_outside(markdown: str, src_uri: str) -> list[str]:
    """Relative link targets of a page (docs/-relative, '/'-separated) that leave docs/."""
    found = []
    for target in LINK.findall(markdown):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path or "://" in path or path.startswith(("/", "mailto:")):
            continue
        uri = posixpath.normpath(posixpath.join(posixpath.dirname(src_uri), path))
        if uri.startswith("../"):
            found.append(uri)
    return found


def on_files(files, config):
    docs = Path(config["docs_dir"]).resolve()
    root = docs.parent
    for page in [f for f in files if f.is_documentation_page() and f.abs_src_path]:
        markdown = Path(page.abs_src_path).read_text(encoding="utf-8")
        for uri in linked_outside(markdown, page.src_uri):
            source = (docs / uri).resolve()
            if (files.get_file_from_path(uri) is not None or source.suffix == ".md" or not source.is_file()
                    or root not in source.parents):
                continue  # already published, a page, or missing: mkdocs reports the link as usual
            # INCLUDED: the "../" of its path would otherwise read as a hidden file, and be left out
            published = File.generated(config, uri, abs_src_path=str(source), inclusion=InclusionLevel.INCLUDED)
            published.dest_uri = f"{PUBLISHED}/{source.relative_to(root).as_posix()}"
            files.append(published)
    return files
