"""The single entry point to text: ``open_documents(spec, split)`` for every kind of source.

Sources: ``"embedded"`` (the shipped corpus ``hope_jax/assets/corpus``, read directly),
``"local"`` (`.txt`/`.jsonl[.xz|.gz]` files, see :mod:`hope_jax.data.local_files`),
``"source_tree"`` (a tree of source files, one document per package, see
:mod:`hope_jax.data.source_tree`), both prepared through the :class:`LocalText` TFDS builder, and
``"tfds"`` (catalog datasets, see :mod:`hope_jax.data.tfds_builders`).  The names other modules
import from here are re-exported.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hope_jax.data import source_tree
from hope_jax.data.local_files import (  # noqa: F401  (re-exported)
  DEFAULT_VALIDATION_PERCENT,
  FILE_SPLITS,
  SPLITS,
  SUFFIXES,
  DataFileError,
  Document,
  ReadStats,
  check_percent,
  in_validation,
  iter_documents,
  iter_file_documents,
  iter_local_split,
  iter_texts,
  list_files,
  local_fingerprint,
  local_split_names,
  split_files,
)
from hope_jax.data.tfds_builders import (  # noqa: F401  (re-exported)
  TFDS_CATALOG,
  CatalogEntry,
  LocalText,
  LocalTextConfig,
  data_source_texts,
  default_data_dir,
  local_text_builder,
  register_catalog_builder,
  source_tree_builder,
  tfds_documents,
  tfds_text_field,
)


class Documents:
  """Re-iterable texts of one split; ``stats`` holds the counts of the latest full pass."""

  def __init__(
    self,
    texts: Callable[[], Iterator[str]],
    *,
    identity: str,
    description: str,
    segment: Callable[[str], list[str]] | None = None,
    doc_key: Callable[[str], str] | None = None,
    manifest: Callable[[dict[str, int]], dict[str, Any]] | None = None,
    count: Callable[[], int] | None = None,
  ) -> None:
    """Wrap a zero-argument callable returning an iterator of texts (empty ones included).

    ``segment`` cuts a text into parts that are tokenized independently (in parallel) and
    concatenated; ``manifest`` describes the corpus for the token cache's ``manifest.json``,
    given the tokens of each document by its ``doc_key``; ``count`` gives the number of records
    (empty ones included) where the source knows it, for progress reports.
    """
    self._texts = texts
    self.identity = identity
    self.description = description
    self.segment = segment
    self.doc_key = doc_key
    self.manifest = manifest
    self.count = count
    self.stats = ReadStats()

  def __iter__(self) -> Iterator[str]:
    """Yield non-empty texts, counting skipped empty ones; raise if there are none."""
    stats = ReadStats()
    for text in self._texts():
      if not text.strip():
        stats.skipped_empty += 1
        continue
      stats.documents += 1
      yield text
    self.stats = stats
    if stats.documents == 0:
      raise ValueError(f"empty corpus: {self.description} has no non-empty documents")


def _spec_dict(spec: Mapping[str, Any] | Any) -> dict[str, Any]:
  """A plain dict of a mapping or ``ml_collections.ConfigDict`` spec."""
  return spec.to_dict() if hasattr(spec, "to_dict") else dict(spec)


def _required(spec: dict[str, Any], key: str) -> Any:
  """A required spec field, with an error naming it and the source."""
  value = spec.get(key)
  if not value:
    raise ValueError(f"data spec field {key!r} is required for source={spec.get('source')!r}")
  return value


def embedded_corpus_dir() -> Path:
  """Directory of the shipped default corpus."""
  return Path(str(importlib.resources.files("hope_jax") / "assets" / "corpus"))


def _open_embedded(spec: dict[str, Any], split: str) -> Documents:
  """The shipped corpus, read directly with the local readers (no TFDS preparation)."""
  root = embedded_corpus_dir()
  if not root.is_dir():
    raise FileNotFoundError(f"the embedded corpus is missing from the installed package: {root}")
  field = spec.get("text_field") or "text"
  if split not in local_split_names(root):
    raise ValueError(
      f"split={split!r} not in the embedded corpus; available: {local_split_names(root)}"
    )
  digest = hashlib.sha1(field.encode())
  for file in list_files(root):
    digest.update(file.name.encode() + b"\0" + file.read_bytes())

  def texts() -> Iterator[str]:
    for doc in iter_local_split(root, split, text_field=field, skip_empty=False):
      yield doc.text

  identity = f"embedded-{digest.hexdigest()[:16]}-{split}"
  return Documents(texts, identity=identity, description=f"embedded corpus split {split!r}")


def _prepared(
  records: Callable[[], Any], *, identity: str, description: str, **kw: Any
) -> Documents:
  """Documents of a prepared random-access source (its "text" records), which also gives the count.

  ``records`` builds the source on first use; one builder serves reading and counting.
  """
  records = functools.cache(records)

  def texts() -> Iterator[str]:
    yield from data_source_texts(records(), "text", description=description)

  return Documents(
    texts, identity=identity, description=description, count=lambda: len(records()), **kw
  )


def _open_local(spec: dict[str, Any], split: str) -> Documents:
  """A local source prepared (lazily, on first read) with :class:`LocalText` into array_record."""
  path = Path(_required(spec, "path")).expanduser()
  field = spec.get("text_field") or "text"
  percent = spec.get("validation_percent")
  percent = DEFAULT_VALIDATION_PERCENT if percent is None else percent
  check_percent(percent)
  if split not in local_split_names(path):
    raise ValueError(
      f"split={split!r} not found in local source {str(path)!r}; "
      f"available: {local_split_names(path)}"
    )
  name = "h" + local_fingerprint(path, text_field=field, validation_percent=percent)
  description = f"local source {str(path)!r} split {split!r}"

  def records() -> Any:
    builder = local_text_builder(
      path, data_dir=spec.get("data_dir"), text_field=field, validation_percent=percent
    )
    return builder.as_data_source(split=split)

  return _prepared(records, identity=f"local-{name}-{split}", description=description)


def _open_tfds(spec: dict[str, Any], split: str) -> Documents:
  """A TFDS catalog dataset read with ``tfds.data_source``."""
  name = _required(spec, "name")
  field = tfds_text_field(name, spec.get("text_field"))
  download = spec.get("download", True)

  def texts() -> Iterator[str]:
    yield from tfds_documents(
      name, split, data_dir=spec.get("data_dir"), text_field=field, download=download
    )

  slug = name.replace("/", "_").replace(":", "_")
  description = f"tfds dataset {name!r} split {split!r}"
  return Documents(texts, identity=f"tfds-{slug}-{field}-{split}", description=description)


def _open_source_tree(spec: dict[str, Any], split: str) -> Documents:
  """A tree of source files, one document per package, prepared with :class:`LocalText`."""
  options = source_tree.SourceTreeOptions.from_spec(spec)
  if split not in SPLITS:
    raise ValueError(f"split={split!r} not in source_tree {options.root!r}; available: {SPLITS}")
  name = "t" + source_tree.fingerprint(options)
  description = f"source tree {options.root!r} split {split!r}"

  def records() -> Any:
    return source_tree_builder(options, data_dir=spec.get("data_dir")).as_data_source(split=split)

  return _prepared(
    records,
    identity=f"tree-{name}-{split}",
    description=description,
    segment=source_tree.segments,
    doc_key=source_tree.package_of,
    manifest=lambda tokens: source_tree.manifest(options, tokens=tokens),
  )


SOURCES: dict[str, Callable[[dict[str, Any], str], Documents]] = {
  "embedded": _open_embedded,
  "local": _open_local,
  "source_tree": _open_source_tree,
  "tfds": _open_tfds,
}


def open_documents(spec: Mapping[str, Any] | Any, split: str) -> Documents:
  """Open ``split`` of ``spec`` (source, path, name, text_field, data_dir, validation_percent).

  ``source_tree`` also reads ``suffixes``, ``max_file_bytes`` and ``exclude``; other sources
  ignore them.
  """
  fields = _spec_dict(spec)
  source = fields.get("source")
  if source not in SOURCES:
    raise ValueError(
      f"data spec field 'source' has unknown value {source!r}; expected one of {sorted(SOURCES)}"
    )
  return SOURCES[source](fields, split)
