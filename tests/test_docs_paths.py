"""Every repository path and module the documentation names in backticks exists (docs that cannot rot)."""
from __future__ import annotations

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "BENCHMARKS.md", "serving/README.md", "serving/models/seg4reg/MODEL_CARD.md",
        *(os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(REPO, "docs"))) if f.endswith(".md")))
# a path is checked when it starts at one of these top-level entries
TOP = ("seg4reg_tf", "serving", "configs", "benchmarks", "scripts", "pipelines", "tests", "docs", ".ci")
# a placeholder (`BASE/N`, `<name>.json`, `RUN/*.keras`, `{a,b}`) names no one file
PLACEHOLDER = re.compile(r"[<>*{}$]|(^|/)[A-Z][A-Z_]+(/|$|\.)")


def named_references(text: str) -> list[str]:
    """The backticked tokens of `text` that name a repository path or a `seg4reg_tf.` module."""
    refs = []
    for span in re.findall(r"`([^`\n]+)`", text):
        for token in span.split():
            token = token.strip("\"'(),;")
            token = token.split("::")[0]  # pytest node ids: the file
            token = re.sub(r":\d+$", "", token)  # file:line
            if PLACEHOLDER.search(token) or "=" in token:
                continue
            if token.startswith("seg4reg_tf.") or token.split("/")[0] in TOP and "/" in token:
                refs.append(token)
    return refs


def missing(ref: str) -> str | None:
    """Why `ref` does not exist in the repository, or None."""
    if "/" in ref:
        return None if os.path.exists(os.path.join(REPO, ref.rstrip("/"))) else "no such file or folder"
    parts = ref.split(".")
    for n in range(len(parts), 0, -1):  # the longest prefix that is a module; the rest names its contents
        base = os.path.join(REPO, *parts[:n])
        source = base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")
        if os.path.isfile(source):
            rest = parts[n:]
            if not rest:
                return None
            with open(source, encoding="utf-8") as f:
                code = f.read()
            name = re.escape(rest[0])
            defined = rf"^\s*(def|class)\s+{name}\b|^{name}\s*[:=]|[\"']{name}[\"']"
            return None if re.search(defined, code, re.M) else f"{'.'.join(parts[:n])} defines no {rest[0]}"
    return "no such module"


def test_the_check_finds_a_missing_path_and_a_missing_name():
    refs = named_references("see `seg4reg_tf/nowhere.py` and `seg4reg_tf.fileio.no_such_fn`, "
                            "not `BASE/N/` nor `serving/models/<name>`")
    assert refs == ["seg4reg_tf/nowhere.py", "seg4reg_tf.fileio.no_such_fn"]
    assert missing(refs[0]) == "no such file or folder"
    assert missing(refs[1]) == "seg4reg_tf.fileio defines no no_such_fn"
    assert missing("seg4reg_tf/fileio.py") is None and missing("seg4reg_tf.fileio") is None


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_document_names_exists(doc):
    with open(os.path.join(REPO, doc), encoding="utf-8") as f:
        refs = named_references(f.read())
    assert refs, f"{doc}: names no repository path (is the check still reading it?)"
    broken = {ref: why for ref in refs if (why := missing(ref))}
    assert not broken, f"{doc} names what does not exist: {broken}"
