"""Corpus tools: build the small embedded default corpus shipped in ``hope_jax/assets/corpus``.

``python -m hope_jax.data.corpus_tools build-embedded --source=../shared/corpus/prose
--out=hope_jax/assets/corpus`` selects documents from permissively licensed or public-domain
sources only (see :data:`TRAIN_BUDGETS`), visiting each source's documents in sha1(id) order
and keeping each one that still fits the source's character budget, so the output is a
deterministic function of the input files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from hope_jax.data.text_sources import Document, iter_documents

# Character budgets per id prefix ("<source>/..."); every listed source is public domain or
# permissively licensed.  GPL/GFDL sources (linux-doc, git-doc, gimp-help, debian-handbook,
# perl-doc) are never selected.
LICENSES: dict[str, str] = {
  "gutenberg": "public domain (Project Gutenberg texts of Shakespeare and Milton)",
  "bible": "public domain (King James Version)",
  "python-doc": "PSF License (CPython 3.11 documentation)",
  "sqlite-doc": "public domain (SQLite documentation)",
  "postgresql-doc": "PostgreSQL License (PostgreSQL 15 documentation)",
  "django-doc": "BSD-3-Clause (Django 3.2 documentation)",
  "sqlalchemy-doc": "MIT (SQLAlchemy documentation)",
}
TRAIN_BUDGETS: dict[str, int] = {
  "gutenberg": 1_700_000,
  "bible": 1_000_000,
  "python-doc": 1_000_000,
  "sqlite-doc": 550_000,
  "postgresql-doc": 550_000,
  "django-doc": 500_000,
  "sqlalchemy-doc": 400_000,
}
VALIDATION_BUDGETS: dict[str, int] = {
  "gutenberg": 260_000,
  "bible": 160_000,
  "python-doc": 40_000,
  "sqlite-doc": 30_000,
  "postgresql-doc": 30_000,
  "django-doc": 15_000,
  "sqlalchemy-doc": 15_000,
}
BUDGETS: dict[str, dict[str, int]] = {"train": TRAIN_BUDGETS, "validation": VALIDATION_BUDGETS}


def _sha1(text: str) -> str:
  """Hex sha1 of a string."""
  return hashlib.sha1(text.encode("utf-8")).hexdigest()


def select_documents(docs: Sequence[Document], budgets: Mapping[str, int]) -> list[Document]:
  """Greedily keep documents (in sha1(id) order) that fit their source's character budget."""
  remaining = dict(budgets)
  chosen: list[Document] = []
  for doc in sorted(docs, key=lambda d: _sha1(d.id)):
    source = doc.id.split("/", 1)[0]
    if source in remaining and len(doc.text) <= remaining[source]:
      remaining[source] -= len(doc.text)
      chosen.append(doc)
  return sorted(chosen, key=lambda d: d.id)


def write_jsonl_xz(docs: Sequence[Document], path: Path) -> int:
  """Write documents as deterministic xz-compressed JSON lines; return the compressed size."""
  payload = "".join(
    json.dumps({"id": d.id, "text": d.text}, ensure_ascii=False, sort_keys=True) + "\n"
    for d in docs
  ).encode("utf-8")
  data = lzma.compress(payload, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_bytes(data)
  tmp.replace(path)
  return len(data)


def build_embedded(
  source: str | Path, out: str | Path, *, max_bytes: int = 2_000_000
) -> dict[str, dict[str, int]]:
  """Build ``out/{train,validation}.jsonl.xz`` from ``source/{train,validation}.jsonl.xz``."""
  summary: dict[str, dict[str, int]] = {}
  total = 0
  for split, budgets in BUDGETS.items():
    src = Path(source) / f"{split}.jsonl.xz"
    docs = select_documents(list(iter_documents(src)), budgets)
    size = write_jsonl_xz(docs, Path(out) / f"{split}.jsonl.xz")
    total += size
    summary[split] = {
      "documents": len(docs),
      "chars": sum(len(d.text) for d in docs),
      "bytes": size,
    }
    for prefix in budgets:
      summary[split][prefix] = sum(1 for d in docs if d.id.startswith(prefix + "/"))
  if total > max_bytes:
    raise ValueError(f"embedded corpus is {total} bytes, over max_bytes={max_bytes}")
  return summary


def _main(argv: Sequence[str] | None = None) -> int:
  """Command line entry point."""
  parser = argparse.ArgumentParser(prog="python -m hope_jax.data.corpus_tools")
  sub = parser.add_subparsers(dest="command", required=True)
  build = sub.add_parser("build-embedded", help="build the shipped default corpus")
  build.add_argument("--source", required=True, help="directory with {train,validation}.jsonl.xz")
  build.add_argument("--out", required=True, help="output directory")
  build.add_argument("--max_bytes", type=int, default=2_000_000)
  args = parser.parse_args(argv)
  summary = build_embedded(args.source, args.out, max_bytes=args.max_bytes)
  print(json.dumps(summary, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(_main())
