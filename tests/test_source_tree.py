"""The source-tree data source: documents per package, the split by package, the manifest, tokens."""

from __future__ import annotations

import json
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from hope_jax.data import source_tree
from hope_jax.data.batches import tokenize_split
from hope_jax.data.text_sources import open_documents
from hope_jax.data.tokenizer import load_tokenizer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
REAL_PACKAGES = ("json", "html", "http", "urllib", "wsgiref", "xmlrpc", "concurrent", "dbm")
REAL_MODULES = ("abc.py", "bisect.py", "colorsys.py", "keyword.py", "shlex.py", "textwrap.py")


def _write(path: Path, content: str | bytes) -> None:
  """Write text (UTF-8) or bytes, creating the parent directories."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content, encoding="utf-8")


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
  """A small tree: two packages, a top-level module, and files every rule leaves out."""
  root = tmp_path / "tree"
  _write(root / "beta" / "b.py", "B = 2\n")
  _write(root / "beta" / "a.py", "A = 1")  # No final newline: one is added.
  _write(root / "beta" / "sub" / "c.py", "")
  _write(root / "beta" / "notes.txt", "not a wanted suffix\n")
  _write(root / "beta" / "latin.py", "name = 'na\xefve'\n".encode("latin-1"))
  _write(root / "alpha" / "__init__.py", "from alpha.core import run\n")
  _write(root / "alpha" / "core.py", "def run():\n  return 'ok'\n")
  _write(root / "alpha" / "generated.py", "TABLE = " + "1, " * 400 + "\n")
  _write(root / "alpha" / "tests" / "test_core.py", "assert True\n")
  _write(root / "alpha" / ".hidden" / "h.py", "hidden = True\n")
  _write(root / ".git" / "hooks.py", "hook = 1\n")
  _write(root / "top.py", "print('top')\n")
  return root


def _options(root: Path, **kwargs) -> source_tree.SourceTreeOptions:
  """Options with a small size cap and tests excluded."""
  spec = {"path": str(root), "max_file_bytes": 1000, "exclude": "tests", **kwargs}
  return source_tree.SourceTreeOptions.from_spec(spec)


def test_documents_are_packages_of_files_in_path_order(tree: Path) -> None:
  packages = {p.document.id: p for p in source_tree.iter_packages(_options(tree))}
  assert sorted(packages) == ["alpha", "beta", "top.py"]
  assert packages["beta"].document.text == (
    "==> beta/a.py <==\nA = 1\n==> beta/b.py <==\nB = 2\n==> beta/sub/c.py <==\n"
  )
  assert packages["alpha"].document.text == (
    "==> alpha/__init__.py <==\nfrom alpha.core import run\n"
    "==> alpha/core.py <==\ndef run():\n  return 'ok'\n"
  )
  assert (packages["beta"].files, packages["beta"].bytes) == (3, 11)
  assert source_tree.segments(packages["beta"].document.text) == [
    "==> beta/a.py <==\nA = 1\n",
    "==> beta/b.py <==\nB = 2\n",
    "==> beta/sub/c.py <==\n",
  ]
  assert source_tree.package_of(packages["beta"].document.text) == "beta"


def test_manifest_names_what_was_left_out_and_why(tree: Path) -> None:
  manifest = source_tree.manifest(_options(tree))
  assert manifest["dropped"] == [
    {"path": "alpha/generated.py", "bytes": 1209, "reason": "over max_file_bytes=1000"},
    {"path": "beta/latin.py", "bytes": 15, "reason": "not UTF-8 (invalid continuation byte)"},
  ]
  assert [p["name"] for p in manifest["packages"]] == ["alpha", "beta", "top.py"]
  totals = {k: sum(s[k] for s in manifest["splits"].values()) for k in ("packages", "files")}
  assert totals == {"packages": 3, "files": 6}
  assert manifest["options"]["exclude"] == ["tests"] and manifest["options"]["suffixes"] == [".py"]
  assert json.loads(json.dumps(manifest)) == manifest  # Written as it is.
  included = _options(tree, exclude="", max_file_bytes=10_000)
  names = {f.path for f in source_tree.candidate_files(included)}
  assert "alpha/tests/test_core.py" in names and "alpha/generated.py" in names
  assert not any(n.startswith(".git") or "/.hidden/" in n for n in names)


def _real_tree(tmp_path: Path) -> Path:
  """Copies of real standard-library packages and modules."""
  root = tmp_path / "real"
  for name in REAL_PACKAGES:
    shutil.copytree(STDLIB / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
  for name in REAL_MODULES:
    shutil.copy(STDLIB / name, root / name)
  return root


def test_deterministic_and_independent_of_where_the_tree_lives(tmp_path: Path) -> None:
  first = _real_tree(tmp_path / "one")
  second = _real_tree(tmp_path / "two")
  a = source_tree.manifest(_options(first, max_file_bytes=500_000))
  b = source_tree.manifest(_options(second, max_file_bytes=500_000))
  assert a["sha256"] == b["sha256"] and a["packages"] == b["packages"]
  assert a == source_tree.manifest(_options(first, max_file_bytes=500_000))
  (second / "json" / "decoder.py").write_text("changed = True\n", encoding="utf-8")
  assert source_tree.manifest(_options(second, max_file_bytes=500_000))["sha256"] != a["sha256"]
  assert source_tree.fingerprint(_options(first)) != source_tree.fingerprint(_options(second))


@pytest.mark.parametrize("percent", [5, 20, 50])
def test_split_by_package(tmp_path: Path, percent: float) -> None:
  root = tmp_path / "many"
  for i in range(60):  # Packages of 100 to 6,000 bytes.
    _write(root / f"pkg{i:02d}" / "mod.py", "x = 1\n" * (17 + (i * 37) % 1000))
  options = _options(root, validation_percent=percent, max_file_bytes=100_000)
  plan = source_tree.plan(options)
  held = {n for n, s in plan.split_of.items() if s == "validation"}
  train = {d.id for d in source_tree.iter_split(options, "train")}
  validation = {d.id for d in source_tree.iter_split(options, "validation")}
  assert validation == held and not train & validation and train | validation == set(plan.packages)
  sizes = {n: sum(f.size for f in files) for n, files in plan.packages.items()}
  share = sum(sizes[n] for n in held) / sum(sizes.values())
  assert percent / 100 * 0.8 <= share <= percent / 100  # Filled up to the budget, never over it.
  order = sorted(plan.packages, key=source_tree._hash_order)
  assert order[0] in held  # The first package in hash order always fits.


def test_tokenizer_round_trip_on_real_files(tmp_path: Path) -> None:
  tok = load_tokenizer()
  chars = tokens = 0
  for package in source_tree.iter_packages(_options(_real_tree(tmp_path), max_file_bytes=500_000)):
    text = package.document.text
    ids = [i for part in tok.encode_batch(source_tree.segments(text), num_threads=1) for i in part]
    assert tok.decode(ids) == text, package.document.id
    assert tok.decode(tok.encode(text)) == text, package.document.id
    chars, tokens = chars + len(text), tokens + len(ids)
  assert 2.5 < chars / tokens < 4.5, chars / tokens  # 3.33 on the 3.11 standard library.


def test_through_tfds_and_the_token_cache(tmp_path: Path) -> None:
  root = _real_tree(tmp_path)
  spec = {
    "source": "source_tree",
    "path": str(root),
    "data_dir": str(tmp_path / "tfds"),
    "validation_percent": 20,
    "suffixes": ".py",
    "max_file_bytes": 500_000,
    "exclude": "",
  }
  tok = load_tokenizer()
  options = source_tree.SourceTreeOptions.from_spec(spec)
  texts = {p.document.id: p.document.text for p in source_tree.iter_packages(options)}
  seen = set()
  for split in ("train", "validation"):
    tokenized = tokenize_split(spec, split, tok, cache_dir=tmp_path / "cache")
    manifest = tokenized.manifest
    listed = [p for p in manifest["packages"] if p["split"] == split]
    assert tokenized.num_documents == len(listed) == manifest["splits"][split]["packages"] > 0
    assert manifest["splits"][split]["tokens"] == tokenized.num_tokens - tokenized.num_documents
    for i in range(tokenized.num_documents):
      text = tok.decode(tokenized.document(i))
      name = source_tree.package_of(text)
      assert text == texts[name] and name not in seen
      assert len(tokenized.document(i)) == next(p["tokens"] for p in listed if p["name"] == name)
      seen.add(name)
  assert seen == set(texts)
  first = tokenize_split(spec, "train", tok, cache_dir=tmp_path / "cache")
  again = tokenize_split(
    {**spec, "data_dir": str(tmp_path / "tfds2")}, "train", tok, cache_dir=tmp_path / "cache2"
  )  # Prepared and tokenized afresh.
  assert again.path != first.path and np.array_equal(again.tokens, first.tokens)
  assert open_documents(spec, "train").identity.startswith("tree-t")


def test_other_sources_ignore_the_new_fields(tmp_path: Path) -> None:
  plain = open_documents({"source": "embedded"}, "validation")
  extra = open_documents(
    {"source": "embedded", "suffixes": ".rs", "max_file_bytes": 1, "exclude": "*"}, "validation"
  )
  assert plain.identity == extra.identity and plain.segment is None and extra.manifest is None


def test_bad_options_are_named(tree: Path, tmp_path: Path) -> None:
  with pytest.raises(ValueError, match="'path'.*source_tree"):
    open_documents({"source": "source_tree", "path": ""}, "train")
  with pytest.raises(FileNotFoundError, match="path=.*missing"):
    open_documents({"source": "source_tree", "path": str(tmp_path / "missing")}, "train")
  with pytest.raises(ValueError, match=r"path='sysconfig:nowhere'.*purelib"):
    _options(tree, path="sysconfig:nowhere")
  assert _options(tree, path="sysconfig:stdlib").root == str(STDLIB.resolve())
  with pytest.raises(ValueError, match="max_file_bytes=-5"):
    _options(tree, max_file_bytes=-5)
  with pytest.raises(ValueError, match="validation_percent=120"):
    _options(tree, validation_percent=120)
  with pytest.raises(ValueError, match=r"suffixes=\[3\]"):
    _options(tree, suffixes=[3])
  with pytest.raises(ValueError, match=r"empty corpus: no \.rs files"):
    source_tree.plan(_options(tree, suffixes=".rs"))
  with pytest.raises(ValueError, match="split='test'"):
    open_documents({"source": "source_tree", "path": str(tree)}, "test")


def test_train_command_on_a_source_tree_records_its_manifest(tree: Path, tmp_path: Path) -> None:
  """`train --config.data.source=source_tree --config.data.path=ROOT` trains and names its corpus."""
  from test_train import small_config  # pylint: disable=import-outside-toplevel

  from hope_jax.config import commands  # pylint: disable=import-outside-toplevel

  config = small_config(steps=2, checkpoint_every=2)
  config.data.update(
    dict(
      source="source_tree",
      path=str(tree),
      validation_percent=20.0,
      max_file_bytes=1000,
      exclude="tests",
      cache_dir=str(tmp_path / "cache"),
    )
  )
  config.data.seq_len = 8
  summary = commands.train(config, str(tmp_path / "run"), verbose=False)
  assert summary["final_step"] == 2 and np.isfinite(summary["final_loss"])
  manifest = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
  expected = source_tree.manifest(_options(tree, validation_percent=20.0))
  assert manifest["sha256"] == expected["sha256"]
  assert manifest["splits"]["train"]["tokens"] > 0
  config.eval.evaluations = ("perplexity",)
  config.eval.perplexity.lengths = (1,)
  commands.evaluate(config, str(tmp_path / "run"), verbose=False)
  evaluated = json.loads((tmp_path / "run" / "eval" / "data_manifest.json").read_text())
  assert evaluated["sha256"] == expected["sha256"]
  validation = [p for p in evaluated["packages"] if p["split"] == "validation"]
  assert validation and all(p["tokens"] > 0 for p in validation)
  assert evaluated["splits"]["validation"]["tokens"] == sum(p["tokens"] for p in validation)
