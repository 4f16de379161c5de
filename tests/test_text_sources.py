"""Tests of local readers, the LocalText TFDS builder, catalog datasets and open_documents."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import ml_collections
import pytest
import tensorflow_datasets as tfds

from hope_jax.data.corpus_tools import LICENSES, build_embedded, select_documents
from hope_jax.data.text_sources import (
  DataFileError,
  Document,
  ReadStats,
  embedded_corpus_dir,
  in_validation,
  iter_documents,
  iter_local_split,
  local_fingerprint,
  local_split_names,
  open_documents,
  tfds_text_field,
)


def _jsonl(path: Path, records: list[dict], opener=open) -> Path:
  """Write JSON lines with ``opener`` (open, gzip.open or lzma.open)."""
  with opener(path, "wt", encoding="utf-8") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  return path


@pytest.fixture()
def mixed_dir(tmp_path: Path) -> Path:
  """A directory with .txt, .jsonl, .jsonl.gz and .jsonl.xz documents, two of them empty."""
  root = tmp_path / "mixed"
  (root / "sub").mkdir(parents=True)
  (root / "sub" / "one.txt").write_text("a text file document", encoding="utf-8")
  (root / "blank.txt").write_text("  \n", encoding="utf-8")
  (root / "ignored.csv").write_text("not, a, document", encoding="utf-8")
  _jsonl(root / "b.jsonl", [{"id": "b1", "text": "bee one"}, {"id": "b2", "text": ""}])
  _jsonl(root / "c.jsonl.gz", [{"id": "c1", "text": "sea one"}], gzip.open)
  _jsonl(
    root / "d.jsonl.xz",
    [{"id": "d1", "text": "dee one"}, {"id": "d2", "text": "dee two"}],
    lzma.open,
  )
  return root


def test_reads_all_formats_and_counts_empty(mixed_dir: Path) -> None:
  stats = ReadStats()
  docs = list(iter_documents(mixed_dir, stats=stats))
  assert sorted(d.text for d in docs) == [
    "a text file document",
    "bee one",
    "dee one",
    "dee two",
    "sea one",
  ]
  assert (stats.documents, stats.skipped_empty) == (5, 2)
  assert {"sub/one.txt", "b1", "c1", "d1", "d2"} == {d.id for d in docs}


def test_custom_text_field(tmp_path: Path) -> None:
  path = _jsonl(tmp_path / "x.jsonl", [{"body": "custom field"}])
  assert [d.text for d in iter_documents(path, text_field="body")] == ["custom field"]
  assert [d.id for d in iter_documents(path, text_field="body")] == ["x.jsonl:1"]


def test_missing_path_is_named(tmp_path: Path) -> None:
  with pytest.raises(FileNotFoundError, match="no-such-corpus"):
    list(iter_documents(tmp_path / "no-such-corpus"))


def test_empty_directory_and_empty_documents(tmp_path: Path) -> None:
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="empty corpus.*empty"):
    list(iter_documents(tmp_path / "empty"))
  _jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "   "}])
  with pytest.raises(ValueError, match="empty corpus.*blank.jsonl"):
    list(iter_documents(tmp_path / "blank.jsonl"))


def test_corrupt_json_names_file_and_line(tmp_path: Path) -> None:
  path = tmp_path / "bad.jsonl"
  path.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": broken\n', encoding="utf-8")
  with pytest.raises(ValueError, match=r"bad\.jsonl.*line 3"):
    list(iter_documents(path))


def test_missing_text_field_names_file_and_line(tmp_path: Path) -> None:
  path = _jsonl(tmp_path / "nofield.jsonl", [{"text": "ok"}, {"content": "wrong field"}])
  with pytest.raises(DataFileError, match=r"nofield\.jsonl' line 2: .*'text'"):
    list(iter_documents(path))


def test_hash_split_is_deterministic_and_partitions(tmp_path: Path) -> None:
  path = _jsonl(
    tmp_path / "all.jsonl", [{"id": f"doc{i}", "text": f"text {i}"} for i in range(200)]
  )
  train = [d.id for d in iter_local_split(path, "train", validation_percent=20)]
  validation = [d.id for d in iter_local_split(path, "validation", validation_percent=20)]
  assert sorted(train + validation) == sorted(f"doc{i}" for i in range(200))
  assert not set(train) & set(validation)
  expected = [
    f"doc{i}"
    for i in range(200)
    if int(hashlib.sha1(f"doc{i}".encode()).hexdigest(), 16) % 100 < 20
  ]
  assert validation == expected and 20 <= len(validation) <= 60
  assert all(in_validation(i, 20) for i in validation)
  with pytest.raises(ValueError, match="validation_percent=101"):
    list(iter_local_split(path, "train", validation_percent=101))


def test_split_files_and_missing_split(tmp_path: Path) -> None:
  _jsonl(tmp_path / "train.jsonl", [{"text": "train doc"}])
  _jsonl(tmp_path / "validation.jsonl.xz", [{"text": "validation doc"}], lzma.open)
  assert local_split_names(tmp_path) == ("train", "validation")
  assert [d.text for d in iter_local_split(tmp_path, "validation")] == ["validation doc"]
  with pytest.raises(ValueError, match="split='test'.*available"):
    list(iter_local_split(tmp_path, "test"))


def test_fingerprint_depends_on_path_and_contents(tmp_path: Path) -> None:
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  a = _jsonl(tmp_path / "a" / "x.jsonl", [{"text": "same"}])
  b = _jsonl(tmp_path / "b" / "x.jsonl", [{"text": "same"}])
  fa = local_fingerprint(a.parent, text_field="text", validation_percent=5)
  assert fa != local_fingerprint(b.parent, text_field="text", validation_percent=5)
  assert fa != local_fingerprint(a.parent, text_field="text", validation_percent=6)
  _jsonl(a, [{"text": "changed contents"}])
  assert fa != local_fingerprint(a.parent, text_field="text", validation_percent=5)


def test_open_documents_errors(tmp_path: Path) -> None:
  with pytest.raises(ValueError, match=r"'source'.*'ftp'"):
    open_documents({"source": "ftp"}, "train")
  with pytest.raises(ValueError, match=r"'path'.*local"):
    open_documents({"source": "local", "path": ""}, "train")
  with pytest.raises(ValueError, match=r"'name'.*tfds"):
    open_documents({"source": "tfds"}, "train")
  with pytest.raises(FileNotFoundError, match="missing-dir"):
    open_documents({"source": "local", "path": str(tmp_path / "missing-dir")}, "train")


def test_embedded_corpus() -> None:
  spec = ml_collections.ConfigDict({"source": "embedded", "text_field": ""})
  docs = open_documents(spec, "validation")
  texts = list(docs)
  assert docs.stats.documents == len(texts) >= 20 and docs.stats.skipped_empty == 0
  assert sum(len(t) > 20_000 for t in texts) >= 4  # long documents for length extrapolation
  assert docs.identity == open_documents({"source": "embedded"}, "validation").identity
  assert docs.identity != open_documents({"source": "embedded"}, "train").identity
  with pytest.raises(ValueError, match="split='test'"):
    open_documents({"source": "embedded"}, "test")


LOCAL_TFDS_SCRIPT = textwrap.dedent("""
  import json, sys
  from pathlib import Path
  import tensorflow_datasets as tfds
  from hope_jax.data.text_sources import open_documents
  corpus, data_dir = sys.argv[1], sys.argv[2]
  spec = {"source": "local", "path": corpus, "data_dir": data_dir, "validation_percent": 30}
  out = {}
  for split in ("train", "validation"):
    docs = open_documents(spec, split)
    out[split] = sorted(docs)
    out[split + "_skipped"] = docs.stats.skipped_empty
    out["identity_" + split] = docs.identity
  name = out["identity_train"].split("-")[1]
  ds = tfds.data_source(f"local_text/{name}", split="train", data_dir=data_dir, download=False)
  out["data_source_len"] = len(ds)
  out["array_record_files"] = sorted(p.name for p in Path(data_dir).rglob("*.array_record*"))
  out["tensorflow_imported"] = "tensorflow" in sys.modules
  print("RESULT" + json.dumps(out))
  """)


def test_local_tfds_builder_in_subprocess_without_tensorflow(
  mixed_dir: Path, tmp_path: Path
) -> None:
  data_dir = tmp_path / "tfds"
  result = subprocess.run(
    [sys.executable, "-c", LOCAL_TFDS_SCRIPT, str(mixed_dir), str(data_dir)],
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "TFDS_DATA_DIR": str(tmp_path / "unused")},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.split("RESULT", 1)[1])
  assert out["tensorflow_imported"] is False
  assert out["array_record_files"] and all("array_record" in f for f in out["array_record_files"])
  expected = {
    s: sorted(d.text for d in iter_local_split(mixed_dir, s, validation_percent=30))
    for s in ("train", "validation")
  }
  assert out["train"] == expected["train"] and out["validation"] == expected["validation"]
  assert out["train_skipped"] + out["validation_skipped"] == 2
  assert (
    out["data_source_len"] == len(expected["train"]) + out["train_skipped"]
  )  # empty docs are stored
  assert not (tmp_path / "unused").exists()
  # Its stderr is a pipe, not a terminal: TFDS's progress bars stay out of it.
  assert "Generating" not in result.stderr and "examples/s" not in result.stderr


def test_local_sources_do_not_collide(tmp_path: Path) -> None:
  for name in ("one", "two"):
    (tmp_path / name).mkdir()
    _jsonl(tmp_path / name / "train.jsonl", [{"text": f"corpus {name}"}])
  data_dir = str(tmp_path / "tfds")
  first = open_documents(
    {"source": "local", "path": str(tmp_path / "one"), "data_dir": data_dir}, "train"
  )
  second = open_documents(
    {"source": "local", "path": str(tmp_path / "two"), "data_dir": data_dir}, "train"
  )
  assert list(first) == ["corpus one"] and list(second) == ["corpus two"]
  assert first.identity != second.identity
  assert len(list((tmp_path / "tfds" / "local_text").iterdir())) == 2


@pytest.mark.parametrize(
  ("name", "field"),
  [
    ("pg19", "book_text"),
    ("c4/en", "text"),
    ("c4/realnewslike:3.1.0", "text"),
    ("scientific_papers/arxiv", "article"),
    ("scientific_papers/pubmed", "article"),
    ("wikipedia/20230601.en", "text"),
  ],
)
def test_catalog_text_fields(name: str, field: str) -> None:
  assert tfds_text_field(name) == field
  assert tfds_text_field(name, "abstract") == "abstract"


def test_unknown_catalog_name_needs_text_field() -> None:
  with pytest.raises(ValueError, match="'imdb_reviews'.*text_field"):
    tfds_text_field("imdb_reviews")


@pytest.mark.parametrize(
  ("name", "split", "field", "other"),
  [
    ("pg19", "validation", "book_text", "book_title"),
    ("scientific_papers/arxiv", "test", "article", "abstract"),
    ("c4/en", "validation", "text", "url"),
    ("wikipedia/20230601.en", "train", "text", "title"),
  ],
)
def test_tfds_source_with_mock_data(
  tmp_path: Path, name: str, split: str, field: str, other: str
) -> None:
  spec = {"source": "tfds", "name": name, "data_dir": str(tmp_path)}
  with tfds.testing.mock_data(num_examples=5):
    docs = open_documents(spec, split)
    texts = list(docs)
    source = tfds.data_source(name, split=split, data_dir=str(tmp_path))
    expected = [source[i][field] for i in range(len(source))]
    expected = [t.decode() if isinstance(t, bytes) else t for t in expected]
    others = [source[i][other] for i in range(len(source))]
  assert docs.stats.documents + docs.stats.skipped_empty == 5
  assert texts == [t for t in expected if t.strip()]
  assert texts != [o.decode() if isinstance(o, bytes) else o for o in others]
  assert docs.identity.startswith("tfds-")


SHARED_PROSE = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "prose"


def test_embedded_corpus_is_small_and_permissive() -> None:
  root = embedded_corpus_dir()
  assert sum(p.stat().st_size for p in root.iterdir()) <= 2_000_000
  for split in ("train", "validation"):
    prefixes = {d.id.split("/", 1)[0] for d in iter_local_split(root, split)}
    assert prefixes <= set(LICENSES), prefixes - set(LICENSES)
  assert not {"linux-doc", "git-doc", "perl-doc", "gimp-help", "debian-handbook"} & set(LICENSES)


def test_select_documents_respects_budgets() -> None:
  docs = [Document(f"bible/{i}", "x" * 10) for i in range(10)]
  docs += [Document("linux-doc/a", "y"), Document("bible/big", "z" * 100)]
  chosen = select_documents(docs, {"bible": 35})
  assert len(chosen) == 3 and all(d.id.startswith("bible/") and len(d.text) == 10 for d in chosen)
  assert chosen == select_documents(list(reversed(docs)), {"bible": 35})  # order-independent


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_PROSE.exists(), reason="needs ../shared/corpus beside the checkout")
def test_build_embedded_reproduces_the_shipped_corpus(tmp_path: Path) -> None:
  build_embedded(SHARED_PROSE, tmp_path)
  for split in ("train", "validation"):
    shipped = (embedded_corpus_dir() / f"{split}.jsonl.xz").read_bytes()
    assert (tmp_path / f"{split}.jsonl.xz").read_bytes() == shipped


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_PROSE.exists(), reason="needs ../shared/corpus beside the checkout")
def test_shared_prose_through_local_builder(tmp_path: Path) -> None:
  spec = {"source": "local", "path": str(SHARED_PROSE), "data_dir": str(tmp_path)}
  docs = open_documents(spec, "validation")
  assert sum(1 for _ in docs) == 159 and docs.stats.skipped_empty == 0
