"""A tree of source files as a corpus: one document per package, split by package.

The root is a directory, or ``sysconfig:<name>`` for a directory of this machine's Python
(``sysconfig:stdlib``, ``sysconfig:purelib``: site-packages).  A package is a top-level directory
of the root (a top-level file is a package of its own).  Its document is its files concatenated
in path order, each preceded by a header line ``==> <path relative to the root> <==``.  Files
are those whose names end with one of the suffixes; a file is left out when it or a directory
above it is hidden (its name starts with ``.``) or matched by an ``exclude`` glob (on its path
relative to the root or on its name), when it is larger than ``max_file_bytes`` (generated
files), or when it is not UTF-8.  Packages go to ``validation`` in the order of the sha256 of
their names while they fit in ``validation_percent`` of the corpus's bytes (bytes stand in for
tokens: about 3.3 characters per token throughout source code); no package is in both splits.
Everything is a function of the files, so the :func:`manifest` (packages, files, bytes, the
sha256 of the corpus, what was left out and why) names exactly the corpus trained on; the token
cache adds the tokens of each package.  The shipped tokenizer keeps text exactly
(``decode(encode(text)) == text``), so documents are stored and tokenized as they are.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import re
import sysconfig
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hope_jax.data.local_files import SPLITS, Document, check_percent

DEFAULT_SUFFIXES: tuple[str, ...] = (".py",)
DEFAULT_MAX_FILE_BYTES = 500_000
DEFAULT_VALIDATION_PERCENT = 5
HEADER = "==> {path} <==\n"
FORMAT = 1  # Part of the fingerprint: bump it when documents or their tokenization change.
_HEADER_START = re.compile(r"^==> ", re.MULTILINE)


def _names(value: str | Sequence[str] | None, *, field: str) -> tuple[str, ...]:
  """A comma-separated string or a sequence of strings as a tuple of non-empty names."""
  if value is None:
    return ()
  items = value.split(",") if isinstance(value, str) else list(value)
  if not all(isinstance(item, str) for item in items):
    raise ValueError(f"data spec field {field!r} must hold strings, got {field}={value!r}")
  return tuple(item.strip() for item in items if item.strip())


def resolve_root(path: str) -> str:
  """The absolute root: a directory, or ``sysconfig:<name>`` for one of this Python's paths."""
  if path.startswith("sysconfig:"):
    paths = sysconfig.get_paths()
    name = path.split(":", 1)[1]
    if name not in paths:
      raise ValueError(
        f"data spec field 'path' names no sysconfig path: path={path!r}; known: {sorted(paths)}"
      )
    path = paths[name]
  return str(Path(path).expanduser().resolve())


@dataclasses.dataclass(frozen=True)
class SourceTreeOptions:
  """Which files of which root make the corpus, and the share of it held out for validation."""

  root: str
  suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
  exclude: tuple[str, ...] = ()
  validation_percent: float = DEFAULT_VALIDATION_PERCENT

  def __post_init__(self) -> None:
    """Fail early, naming the field and its value."""
    root = Path(self.root)
    if not root.is_dir():
      raise FileNotFoundError(f"source_tree root is not a directory: path={self.root!r}")
    if not self.suffixes:
      raise ValueError(f"data spec field 'suffixes' names no suffix: suffixes={self.suffixes!r}")
    if (
      isinstance(self.max_file_bytes, bool)
      or not isinstance(self.max_file_bytes, int)
      or (self.max_file_bytes < 1)
    ):
      raise ValueError(
        f"data spec field 'max_file_bytes' must be a positive integer, got "
        f"max_file_bytes={self.max_file_bytes!r}"
      )
    check_percent(self.validation_percent)

  @classmethod
  def from_spec(cls, spec: Mapping[str, Any]) -> SourceTreeOptions:
    """Options from a data spec: ``path`` (the root), ``suffixes``, ``max_file_bytes``, ..."""
    path = spec.get("path")
    if not path:
      raise ValueError("data spec field 'path' (the root) is required for source='source_tree'")
    percent = spec.get("validation_percent")
    return cls(
      root=resolve_root(path),
      suffixes=_names(spec.get("suffixes"), field="suffixes") or DEFAULT_SUFFIXES,
      max_file_bytes=spec.get("max_file_bytes") or DEFAULT_MAX_FILE_BYTES,
      exclude=_names(spec.get("exclude"), field="exclude"),
      validation_percent=DEFAULT_VALIDATION_PERCENT if percent is None else percent,
    )


@dataclasses.dataclass(frozen=True)
class TreeFile:
  """One candidate file: its path relative to the root (posix), size and mtime."""

  path: str
  size: int
  mtime_ns: int

  @property
  def package(self) -> str:
    """The top-level directory (or the file's own name at the top level)."""
    return self.path.split("/", 1)[0]


def _excluded(rel: str, patterns: tuple[str, ...]) -> bool:
  """Whether a pattern matches the relative path or the name of a file or directory."""
  name = rel.rsplit("/", 1)[-1]
  return name.startswith(".") or any(
    fnmatch.fnmatchcase(rel, p) or fnmatch.fnmatchcase(name, p) for p in patterns
  )


def candidate_files(options: SourceTreeOptions) -> list[TreeFile]:
  """Wanted files outside hidden and excluded directories, in path order (links not followed)."""
  root = Path(options.root)
  found: list[TreeFile] = []
  for directory, dirs, files in os.walk(root):
    base = Path(directory).relative_to(root).as_posix()
    prefix = "" if base == "." else base + "/"
    dirs[:] = [d for d in dirs if not _excluded(prefix + d, options.exclude)]
    for name in files:
      rel = prefix + name
      if not name.endswith(options.suffixes) or _excluded(rel, options.exclude):
        continue
      path = root / rel
      if not path.is_file():
        continue
      st = path.stat()
      found.append(TreeFile(rel, st.st_size, st.st_mtime_ns))
  return sorted(found, key=lambda f: f.path)


def fingerprint(options: SourceTreeOptions) -> str:
  """Hash of the options and every candidate file's path, size and mtime."""
  h = hashlib.sha1(f"{FORMAT}\0{dataclasses.astuple(options)!r}".encode())
  for f in candidate_files(options):
    h.update(f"\0{f.path}\0{f.size}\0{f.mtime_ns}".encode())
  return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Plan:
  """The files of each package, the split of each package and the files over the size cap."""

  packages: dict[str, list[TreeFile]]
  split_of: dict[str, str]
  too_large: list[TreeFile]


def _hash_order(name: str) -> str:
  """Order in which packages are offered to the validation split."""
  return hashlib.sha256(name.encode("utf-8")).hexdigest()


def plan(options: SourceTreeOptions) -> Plan:
  """Group the candidate files into packages and assign every package to one split."""
  packages: dict[str, list[TreeFile]] = {}
  too_large: list[TreeFile] = []
  for f in candidate_files(options):
    if f.size > options.max_file_bytes:
      too_large.append(f)
    else:
      packages.setdefault(f.package, []).append(f)
  if not packages:
    raise ValueError(
      f"empty corpus: no {'/'.join(options.suffixes)} files of at most "
      f"{options.max_file_bytes} bytes under source_tree root {options.root!r}"
    )
  sizes = {name: sum(f.size for f in files) for name, files in packages.items()}
  budget = sum(sizes.values()) * options.validation_percent / 100
  held: list[str] = []
  used = 0
  for name in sorted(packages, key=_hash_order):
    if used + sizes[name] <= budget:
      held.append(name)
      used += sizes[name]
  if not held and budget > 0 and len(packages) > 1:
    held.append(min(packages, key=lambda n: (sizes[n], _hash_order(n))))
  split_of = {name: "validation" if name in held else "train" for name in sorted(packages)}
  return Plan(packages, split_of, too_large)


@dataclasses.dataclass(frozen=True)
class Package:
  """One package read from the tree: its split, document, file count and source bytes."""

  split: str
  document: Document
  files: int
  bytes: int


def _read_package(
  root: Path, name: str, split: str, files: list[TreeFile], dropped: list[dict[str, Any]]
) -> Package:
  """The package's document: each UTF-8 file after its header; other files go to ``dropped``."""
  parts: list[str] = []
  size = 0
  for f in files:
    data = (root / f.path).read_bytes()
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError as e:
      dropped.append({"path": f.path, "bytes": len(data), "reason": f"not UTF-8 ({e.reason})"})
      continue
    parts.append(HEADER.format(path=f.path))
    parts.append(text if not text or text.endswith("\n") else text + "\n")
    size += len(data)
  return Package(split, Document(name, "".join(parts)), len(parts) // 2, size)


def iter_packages(
  options: SourceTreeOptions,
  *,
  split: str | None = None,
  dropped: list[dict[str, Any]] | None = None,
) -> Iterator[Package]:
  """Yield the packages (of ``split``, or all) with a readable file, in name order (id = name)."""
  dropped = dropped if dropped is not None else []
  p = plan(options)
  root = Path(options.root)
  for name in sorted(p.packages):
    if split is not None and p.split_of[name] != split:
      continue
    package = _read_package(root, name, p.split_of[name], p.packages[name], dropped)
    if package.files:
      yield package


def iter_split(options: SourceTreeOptions, split: str) -> Iterator[Document]:
  """Yield the documents (packages) of one split."""
  if split not in SPLITS:
    raise ValueError(f"split={split!r} not in source_tree {options.root!r}; available: {SPLITS}")
  for package in iter_packages(options, split=split):
    yield package.document


def segments(text: str) -> list[str]:
  """Cut a package document before each header line, so its files are tokenized in parallel."""
  starts = [m.start() for m in _HEADER_START.finditer(text)]
  if not starts or starts[0] != 0:
    starts.insert(0, 0)
  return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def package_of(text: str) -> str:
  """The package a document belongs to, read from its first header line."""
  if not text.startswith("==> "):
    raise ValueError(f"not a source_tree document: it starts with {text[:40]!r}")
  return text[4 : text.index(" <==\n")].split("/", 1)[0]


def manifest(
  options: SourceTreeOptions, *, tokens: Mapping[str, int] | None = None
) -> dict[str, Any]:
  """What the corpus is: options, packages (split, files, bytes, characters), sha256, drops.

  ``tokens`` (package -> tokens, EOS excluded) adds each tokenized package's tokens and each
  split's tokens and characters per token.
  """
  dropped: list[dict[str, Any]] = []
  p = plan(options)
  dropped.extend(
    {"path": f.path, "bytes": f.size, "reason": f"over max_file_bytes={options.max_file_bytes}"}
    for f in p.too_large
  )
  corpus = hashlib.sha256()
  packages: list[dict[str, Any]] = []
  for package in iter_packages(options, dropped=dropped):
    doc = package.document
    corpus.update(doc.id.encode("utf-8") + b"\0" + doc.text.encode("utf-8") + b"\0")
    packages.append(
      {
        "name": doc.id,
        "split": package.split,
        "files": package.files,
        "bytes": package.bytes,
        "characters": len(doc.text),
      }
    )
    if tokens is not None and doc.id in tokens:
      packages[-1]["tokens"] = int(tokens[doc.id])
  splits: dict[str, dict[str, Any]] = {}
  for split in SPLITS:
    members = [pk for pk in packages if pk["split"] == split]
    splits[split] = {
      key: sum(pk[key] for pk in members) for key in ("files", "bytes", "characters")
    }
    splits[split]["packages"] = len(members)
    if members and all("tokens" in pk for pk in members):
      splits[split]["tokens"] = sum(pk["tokens"] for pk in members)
      splits[split]["characters_per_token"] = round(
        splits[split]["characters"] / max(splits[split]["tokens"], 1), 4
      )
  return {
    "source": "source_tree",
    "format": FORMAT,
    "options": {
      k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(options).items()
    },
    "sha256": corpus.hexdigest(),
    "splits": splits,
    "packages": packages,
    "dropped": sorted(dropped, key=lambda d: d["path"]),
  }
