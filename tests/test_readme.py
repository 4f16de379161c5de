"""The README's code runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(section: str) -> list[str]:
  """The ```python blocks of the README section whose heading starts with section."""
  text = README.read_text(encoding="utf-8")
  start = text.index(f"\n## {section}")
  end = text.find("\n## ", start + 1)
  return re.findall(r"```python\n(.*?)```", text[start : end if end >= 0 else None], re.S)


def test_encoder_example_runs(capsys):
  (block,) = python_blocks("The encoders in your own Flax NNX model")
  exec(compile(block, "README.md", "exec"), {})  # pylint: disable=exec-used
  assert capsys.readouterr().out.strip() == "(2, 2048, 256)"
