"""Tokenizes the train and validation splits a config reads (into the token cache), timing each."""

import importlib.util
import sys
import time

from hope_jax.config import resolve

path, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
spec = importlib.util.spec_from_file_location("protocol", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
data = resolve.resolve(module.get_config(arg)).data
tokenizer = data.load_tokenizer()
for split in ("train", "validation"):
  start = time.perf_counter()
  tokens = data.load_split(split, tokenizer, progress=True)
  print(
    f"{split}: {tokens.num_tokens:,} tokens, {tokens.num_documents:,} documents "
    f"in {time.perf_counter() - start:.1f} s",
    flush=True,
  )
