"""TFDS: the builder that prepares local sources into array_record, and catalog text datasets.

The ``"local"`` and ``"source_tree"`` sources go through the :class:`LocalText` builder (prepared
once into array_record files under ``data_dir``, named by a fingerprint of the files and
options); ``"tfds"`` reads catalog datasets with ``tfds.data_source``.  Neither imports
tensorflow.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from hope_jax.data import source_tree
from hope_jax.data.local_files import (
  DEFAULT_VALIDATION_PERCENT,
  check_percent,
  iter_local_split,
  local_fingerprint,
  local_split_names,
)

# ----------------------------------------------------------------------------------------------
# TFDS builder for local text, prepared into array_record files.


@dataclasses.dataclass
class LocalTextConfig(tfds.core.BuilderConfig):
  """Builder config of one local source; its name is a hash of path, options and file stats."""

  path: str = ""
  text_field: str = "text"
  validation_percent: float = DEFAULT_VALIDATION_PERCENT
  tree: source_tree.SourceTreeOptions | None = None  # set for the source_tree source


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
    cfg = self.builder_config
    names = source_tree.SPLITS if cfg.tree else local_split_names(cfg.path)
    return {split: self._generate_examples(split) for split in names}

  def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (index, {"id", "text"}) for every document of ``split``, empty ones included."""
    cfg = self.builder_config
    if cfg.tree:
      docs = source_tree.iter_split(cfg.tree, split)
    else:
      docs = iter_local_split(
        cfg.path,
        split,
        text_field=cfg.text_field,
        validation_percent=cfg.validation_percent,
        skip_empty=False,
      )
    for index, doc in enumerate(docs):
      yield index, {"id": doc.id, "text": doc.text}


def show_progress_bars() -> None:
  """TFDS's progress bars on a terminal only: a log or a pipe gets no bar redrawn line by line."""
  tfds.display_progress_bar(sys.stderr.isatty())


def default_data_dir() -> str:
  """``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets``."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")


def _prepared_builder(
  config: LocalTextConfig, data_dir: str | os.PathLike[str] | None
) -> LocalText:
  """The :class:`LocalText` builder of config, prepared into array_record (once) in data_dir."""
  builder = LocalText(
    config=config, data_dir=data_dir or default_data_dir(), file_format="array_record"
  )
  show_progress_bars()
  builder.download_and_prepare()
  return builder


def local_text_builder(
  path: str | os.PathLike[str],
  *,
  data_dir: str | os.PathLike[str] | None = None,
  text_field: str = "text",
  validation_percent: float = DEFAULT_VALIDATION_PERCENT,
) -> LocalText:
  """A :class:`LocalText` builder for ``path``, prepared once into array_record in ``data_dir``."""
  check_percent(validation_percent)
  p = Path(path).expanduser().resolve()
  name = "h" + local_fingerprint(p, text_field=text_field, validation_percent=validation_percent)
  config = LocalTextConfig(
    name=name,
    description=str(p),
    path=str(p),
    text_field=text_field,
    validation_percent=validation_percent,
  )
  return _prepared_builder(config, data_dir)


def source_tree_builder(
  options: source_tree.SourceTreeOptions, *, data_dir: str | os.PathLike[str] | None = None
) -> LocalText:
  """A :class:`LocalText` builder of a source tree (one example per package), prepared once."""
  config = LocalTextConfig(
    name="t" + source_tree.fingerprint(options),
    description=options.root,
    path=options.root,
    validation_percent=options.validation_percent,
    tree=options,
  )
  return _prepared_builder(config, data_dir)


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
  show_progress_bars()
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
  yield from data_source_texts(source, field, description=f"tfds dataset {name!r}")


def data_source_texts(source: Sequence[Any], field: str, *, description: str) -> Iterator[str]:
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
