"""Text sources: local files, the shipped embedded corpus and TFDS catalog datasets.

Supported local inputs are directories or files of `.txt` (one document per file)
and JSON lines (`.jsonl`, `.jsonl.xz`, `.jsonl.gz`) whose records hold the document
text in a configurable field (default ``"text"``).  Empty documents are skipped and
counted in a :class:`ReadStats`.

Splits of a local source come either from the files themselves (a directory with
``train.jsonl.xz`` / ``validation.jsonl.xz`` or any supported suffix) or, for a single
file or a directory without split files, from a deterministic hash split of document
ids: a document is in ``validation`` iff ``int(sha1(id).hexdigest(), 16) % 100 <
validation_percent``, otherwise in ``train``.

The ``"embedded"`` source reads the shipped corpus ``hope_jax/assets/corpus`` directly
with the same local readers (no TFDS preparation needed).  The ``"local"`` source goes
through the :class:`LocalText` TFDS builder (array_record files under ``data_dir``),
and ``"tfds"`` reads catalog datasets with ``tfds.data_source``; neither path imports
tensorflow.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.resources
import inspect
import json
import lzma
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import tensorflow_datasets as tfds
from etils import epath

SUFFIXES: tuple[str, ...] = (".txt", ".jsonl", ".jsonl.xz", ".jsonl.gz")
SPLITS: tuple[str, ...] = ("train", "validation")
DEFAULT_VALIDATION_PERCENT = 5


@dataclasses.dataclass
class ReadStats:
  """Counts of documents read and empty documents skipped."""

  documents: int = 0
  skipped_empty: int = 0


@dataclasses.dataclass(frozen=True)
class Document:
  """One document: a stable id and its text."""

  id: str
  text: str


def _suffix(path: Path) -> str | None:
  """Return the supported suffix of ``path`` or None."""
  name = path.name
  for suffix in sorted(SUFFIXES, key=len, reverse=True):
    if name.endswith(suffix):
      return suffix
  return None


def list_files(path: str | os.PathLike[str]) -> list[Path]:
  """List the supported text files at ``path`` (a file or a directory, searched recursively)."""
  p = Path(path).expanduser()
  if not p.exists():
    raise FileNotFoundError(f"local corpus path does not exist: {str(p)!r}")
  if p.is_file():
    if _suffix(p) is None:
      raise ValueError(f"unsupported file type {str(p)!r}: expected one of {SUFFIXES}")
    return [p]
  files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) is not None)
  if not files:
    raise ValueError(f"empty corpus: no {'/'.join(SUFFIXES)} files under {str(p)!r}")
  return files


def _open_text(path: Path) -> IO[str]:
  """Open a possibly compressed text file for reading as UTF-8."""
  if path.name.endswith(".xz"):
    return lzma.open(path, "rt", encoding="utf-8")
  if path.name.endswith(".gz"):
    return gzip.open(path, "rt", encoding="utf-8")
  return open(path, encoding="utf-8")


def iter_file_documents(
    path: Path,
    *,
    text_field: str = "text",
    id_field: str = "id",
    stats: ReadStats | None = None,
    root: Path | None = None,
    skip_empty: bool = True,
) -> Iterator[Document]:
  """Yield the documents of one file, skipping and counting empty ones if ``skip_empty``."""
  stats = stats if stats is not None else ReadStats()
  if _suffix(path) == ".txt":
    doc_id = str(path.relative_to(root)) if root else path.name
    text = path.read_text(encoding="utf-8")
    if skip_empty and not text.strip():
      stats.skipped_empty += 1
      return
    stats.documents += 1
    yield Document(doc_id, text)
    return
  with _open_text(path) as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"corrupt JSON in {str(path)!r} line {lineno}: {e.msg}") from e
      if not isinstance(record, dict) or text_field not in record:
        raise KeyError(f"document without text field {text_field!r} in {str(path)!r} line {lineno}")
      text = record[text_field]
      if not isinstance(text, str):
        raise ValueError(
            f"text field {text_field!r} is not a string in {str(path)!r} line {lineno}"
        )
      if skip_empty and not text.strip():
        stats.skipped_empty += 1
        continue
      stats.documents += 1
      yield Document(str(record.get(id_field, f"{path.name}:{lineno}")), text)


def iter_documents(
    path: str | os.PathLike[str],
    *,
    text_field: str = "text",
    stats: ReadStats | None = None,
) -> Iterator[Document]:
  """Yield all non-empty documents under ``path``; raise if there are none."""
  stats = stats if stats is not None else ReadStats()
  p = Path(path).expanduser()
  root = p if p.is_dir() else None
  before = stats.documents
  for file in list_files(p):
    yield from iter_file_documents(file, text_field=text_field, stats=stats, root=root)
  if stats.documents == before:
    raise ValueError(f"empty corpus: no non-empty documents under {str(p)!r}")


def iter_texts(
    paths: Sequence[str | os.PathLike[str]], *, text_field: str = "text"
) -> Iterator[str]:
  """Yield the text of every document under each of ``paths``."""
  for path in paths:
    for doc in iter_documents(path, text_field=text_field):
      yield doc.text


# ----------------------------------------------------------------------------------------------
# Splits of local sources.

FILE_SPLITS: tuple[str, ...] = ("train", "validation", "test")


def split_files(path: str | os.PathLike[str]) -> dict[str, Path]:
  """Map split names to the ``<split>.<suffix>`` files or ``<split>/`` folders in ``path``."""
  p = Path(path).expanduser()
  found: dict[str, Path] = {}
  if not p.is_dir():
    return found
  for split in FILE_SPLITS:
    candidates = [p / f"{split}{suffix}" for suffix in SUFFIXES] + [p / split]
    present = [c for c in candidates if c.exists()]
    if len(present) > 1:
      raise ValueError(f"split {split!r} of {str(p)!r} is ambiguous: {[str(c) for c in present]}")
    if present:
      found[split] = present[0]
  return found


def in_validation(doc_id: str, validation_percent: float) -> bool:
  """Hash split: a document is in ``validation`` iff sha1(id) mod 100 < validation_percent."""
  return int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100 < validation_percent


def _check_percent(validation_percent: float) -> None:
  """Reject validation percentages outside [0, 100]."""
  if not 0 <= validation_percent <= 100:
    raise ValueError(f"validation_percent={validation_percent!r} must be in [0, 100]")


def local_split_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
  """The splits a local source offers: its split files, else train/validation by hash."""
  return tuple(split_files(path)) or SPLITS


def iter_local_split(
    path: str | os.PathLike[str],
    split: str,
    *,
    text_field: str = "text",
    validation_percent: float = DEFAULT_VALIDATION_PERCENT,
    stats: ReadStats | None = None,
    skip_empty: bool = True,
) -> Iterator[Document]:
  """Yield the documents of one split of a local source (split files, or the id hash split)."""
  _check_percent(validation_percent)
  p = Path(path).expanduser()
  files = split_files(p)
  names = tuple(files) or SPLITS
  if split not in names:
    raise ValueError(f"split={split!r} not found in local source {str(p)!r}; available: {names}")
  if files:
    target = files[split]
    root = target if target.is_dir() else None
    for file in list_files(target):
      yield from iter_file_documents(
          file, text_field=text_field, stats=stats, root=root, skip_empty=skip_empty
      )
    return
  root = p if p.is_dir() else None
  want_validation = split == "validation"
  for file in list_files(p):
    for doc in iter_file_documents(file, text_field=text_field, root=root, skip_empty=False):
      if in_validation(doc.id, validation_percent) != want_validation:
        continue
      if skip_empty and not doc.text.strip():
        if stats is not None:
          stats.skipped_empty += 1
        continue
      if stats is not None:
        stats.documents += 1
      yield doc


def local_fingerprint(
    path: str | os.PathLike[str], *, text_field: str, validation_percent: float
) -> str:
  """Hash of the absolute path, the options and every file's name, size and mtime."""
  p = Path(path).expanduser().resolve()
  h = hashlib.sha1(f"{p}\0{text_field}\0{validation_percent}".encode())
  for file in list_files(p):
    st = file.stat()
    h.update(f"\0{file}\0{st.st_size}\0{st.st_mtime_ns}".encode())
  return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# TFDS builder for local text, prepared into array_record files.


@dataclasses.dataclass
class LocalTextConfig(tfds.core.BuilderConfig):
  """Builder config of one local source; its name is a hash of path, options and file stats."""

  path: str = ""
  text_field: str = "text"
  validation_percent: float = DEFAULT_VALIDATION_PERCENT


class LocalText(tfds.core.GeneratorBasedBuilder):
  """Local `.txt`/`.jsonl[.xz|.gz]` documents as a TFDS dataset with `id` and `text` features."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    """This module's path; TFDS's own lookup needs ``importlib_resources`` (tfds#11212)."""
    return epath.Path(inspect.getfile(cls))

  def _info(self) -> tfds.core.DatasetInfo:
    """Features: the document id and its text (empty documents are kept and skipped on read)."""
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"Local text documents from {self.builder_config.path}",
        features=tfds.features.FeaturesDict(
            {"id": tfds.features.Text(), "text": tfds.features.Text()}
        ),
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict[str, str]]]]:
    """One generator per split of the local source."""
    del dl_manager
    return {
        split: self._generate_examples(split)
        for split in local_split_names(self.builder_config.path)
    }

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (index, {"id", "text"}) for every document of ``split``, empty ones included."""
    cfg = self.builder_config
    docs = iter_local_split(
        cfg.path,
        split,
        text_field=cfg.text_field,
        validation_percent=cfg.validation_percent,
        skip_empty=False,
    )
    for index, doc in enumerate(docs):
      yield index, {"id": doc.id, "text": doc.text}


def default_data_dir() -> str:
  """``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets``."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def local_text_builder(
    path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    text_field: str = "text",
    validation_percent: float = DEFAULT_VALIDATION_PERCENT,
) -> LocalText:
  """A :class:`LocalText` builder for ``path``, prepared once into array_record in ``data_dir``."""
  _check_percent(validation_percent)
  p = Path(path).expanduser().resolve()
  name = "h" + local_fingerprint(p, text_field=text_field, validation_percent=validation_percent)
  config = LocalTextConfig(
      name=name,
      description=str(p),
      path=str(p),
      text_field=text_field,
      validation_percent=validation_percent,
  )
  builder = LocalText(
      config=config, data_dir=data_dir or default_data_dir(), file_format="array_record"
  )
  builder.download_and_prepare()
  return builder


# ----------------------------------------------------------------------------------------------
# TFDS catalog datasets.


@dataclasses.dataclass(frozen=True)
class CatalogEntry:
  """Text field of a TFDS catalog dataset and, if lazily registered, the module registering it."""

  text_field: str
  module: str | None = None


TFDS_CATALOG: dict[str, CatalogEntry] = {
    "pg19": CatalogEntry("book_text"),
    "c4": CatalogEntry("text", "tensorflow_datasets.text.c4"),
    "scientific_papers": CatalogEntry("article"),
    "wikipedia": CatalogEntry("text", "tensorflow_datasets.text.wikipedia"),
    "wiki40b": CatalogEntry("text", "tensorflow_datasets.text.wiki40b"),
    "lm1b": CatalogEntry("text"),
}


def _catalog_base(name: str) -> str:
  """Dataset name without config and version: ``"c4/en:3.1.0"`` -> ``"c4"``."""
  return name.split("/", 1)[0].split(":", 1)[0]


def tfds_text_field(name: str, text_field: str | None = None) -> str:
  """The text feature of TFDS dataset ``name`` (``text_field`` overrides the catalog)."""
  if text_field:
    return text_field
  entry = TFDS_CATALOG.get(_catalog_base(name))
  if entry is None:
    raise ValueError(
        f"name={name!r} has no known text field; set text_field (known: {sorted(TFDS_CATALOG)})"
    )
  return entry.text_field


def register_catalog_builder(name: str) -> None:
  """Import the module that registers a lazily loaded TFDS text builder (e.g. c4, wikipedia)."""
  entry = TFDS_CATALOG.get(_catalog_base(name))
  if entry is not None and entry.module:
    importlib.import_module(entry.module)


def tfds_documents(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    text_field: str | None = None,
    download: bool = True,
) -> Iterator[str]:
  """Yield the text of every example of a TFDS catalog split read with ``tfds.data_source``."""
  field = tfds_text_field(name, text_field)
  register_catalog_builder(name)
  try:
    source = tfds.data_source(
        name, split=split, data_dir=data_dir or default_data_dir(), download=download
    )
  except ModuleNotFoundError as e:
    if e.name != "importlib_resources":
      raise
    raise ModuleNotFoundError(
        f"preparing tfds dataset {name!r} needs the importlib_resources package, which "
        "tensorflow-datasets uses without declaring it (tensorflow/datasets#11212): "
        "pip install importlib_resources",
        name=e.name,
    ) from e
  yield from _data_source_texts(source, field, description=f"tfds dataset {name!r}")


def _data_source_texts(source: Sequence[Any], field: str, *, description: str) -> Iterator[str]:
  """Yield decoded texts of ``field`` from a random-access data source, in index order.

  Records are read one by one with ``source[i]``: batched ``__getitems__`` is ~2x faster on
  array_record but is broken under ``tfds.testing.mock_data`` (an unbound mock attribute),
  and reading is negligible next to tokenization (0.9 s for the 71M-character prose split).
  """
  for key in range(len(source)):
    record = source[key]
    if field not in record:
      raise KeyError(
          f"{description} record {key} has no text field {field!r}; has {sorted(record)}"
      )
    text = record[field]
    yield text.decode("utf-8") if isinstance(text, bytes) else str(text)


# ----------------------------------------------------------------------------------------------
# The single entry point.


class Documents:
  """Re-iterable texts of one split; ``stats`` holds the counts of the latest full pass."""

  def __init__(
      self, texts: Callable[[], Iterator[str]], *, identity: str, description: str
  ) -> None:
    """Wrap a zero-argument callable returning an iterator of texts (empty ones included)."""
    self._texts = texts
    self.identity = identity
    self.description = description
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


def _open_local(spec: dict[str, Any], split: str) -> Documents:
  """A local source prepared (lazily, on first read) with :class:`LocalText` into array_record."""
  path = Path(_required(spec, "path")).expanduser()
  field = spec.get("text_field") or "text"
  percent = spec.get("validation_percent")
  percent = DEFAULT_VALIDATION_PERCENT if percent is None else percent
  _check_percent(percent)
  if split not in local_split_names(path):
    raise ValueError(
        f"split={split!r} not found in local source {str(path)!r}; "
        f"available: {local_split_names(path)}"
    )
  name = "h" + local_fingerprint(path, text_field=field, validation_percent=percent)
  description = f"local source {str(path)!r} split {split!r}"

  def texts() -> Iterator[str]:
    builder = local_text_builder(
        path, data_dir=spec.get("data_dir"), text_field=field, validation_percent=percent
    )
    yield from _data_source_texts(
        builder.as_data_source(split=split), "text", description=description
    )

  return Documents(texts, identity=f"local-{name}-{split}", description=description)


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


SOURCES: dict[str, Callable[[dict[str, Any], str], Documents]] = {
    "embedded": _open_embedded,
    "local": _open_local,
    "tfds": _open_tfds,
}


def open_documents(spec: Mapping[str, Any] | Any, split: str) -> Documents:
  """Open ``split`` of ``spec`` (source, path, name, text_field, data_dir, validation_percent)."""
  fields = _spec_dict(spec)
  source = fields.get("source")
  if source not in SOURCES:
    raise ValueError(
        f"data spec field 'source' has unknown value {source!r}; expected one of {sorted(SOURCES)}"
    )
  return SOURCES[source](fields, split)
