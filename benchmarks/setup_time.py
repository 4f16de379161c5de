"""Set-up time before the first training step: initial state (on device or host) and step compile.

    python3 benchmarks/setup_time.py --shape 340m:2048x32 --encoder rope --places device,host

Each place runs in a fresh process with no persistent compilation cache, as a first start does,
and is recorded as timed out after --place_timeout seconds.
It prints one JSON record per place: seconds for ``hope_jax.training.setup.setup`` (building the initial state,
``train.init_on``), for the first step (its compile, autotuning included, and one run), XLA's
compile seconds per jitted function, and then whether the places' initial parameters agree.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import parse_shape, run_config, setup_run, write_json  # noqa: I001

SAMPLE = 4096  # leading elements of each parameter kept for the comparison


def child(args: argparse.Namespace) -> None:
  """Times one place in this process and prints its record."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax._src import monitoring  # pylint: disable=import-outside-toplevel
  from train_throughput import step_and_batch  # pylint: disable=import-outside-toplevel

  compiles: list[tuple[str, float]] = []

  def listen(event: str, seconds: float, **kwargs) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append((str(kwargs.get("fun_name", "?")), seconds))

  monitoring.register_event_duration_secs_listener(listen)
  size, seq_len, batch = parse_shape(args.shape)
  config = run_config(size, args.encoder, seq_len=seq_len, batch_size=batch)
  config.train.init_on = args.place
  start = time.perf_counter()
  run = setup_run(config)
  jax.block_until_ready(run.state)
  setup_s = time.perf_counter() - start
  leaves = jax.tree_util.tree_leaves_with_path(run.state.params)
  np.savez(
    args.sample, **{jax.tree_util.keystr(p): np.asarray(x).ravel()[:SAMPLE] for p, x in leaves}
  )
  step, tokens = step_and_batch(run, seq_len, batch)
  start = time.perf_counter()
  jax.block_until_ready(step(run.state, tokens))
  first_step_s = time.perf_counter() - start
  by_name: dict[str, float] = {}
  for name, seconds in compiles:
    by_name[name] = by_name.get(name, 0.0) + seconds
  print(
    json.dumps(
      {
        "shape": args.shape,
        "encoder": args.encoder,
        "init_on": args.place,
        "device": jax.devices()[0].device_kind,
        "setup_s": round(setup_s, 1),
        "first_step_s": round(first_step_s, 1),
        "compile_s": {
          k: round(v, 1) for k, v in sorted(by_name.items(), key=lambda kv: -kv[1]) if v >= 0.1
        },
      }
    )
  )


def compare(paths: dict[str, str]) -> dict:
  """Compares the saved parameter samples of the places: bit-identical or how far apart."""
  samples = {place: dict(np.load(path)) for place, path in paths.items()}
  (first, a), *rest = samples.items()
  out = {}
  for place, b in rest:
    diffs = [np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max() for k in a]
    equal = sum(np.array_equal(a[k], b[k]) for k in a)
    out[f"{first}_vs_{place}"] = {
      "identical_leaves": f"{equal}/{len(a)}",
      "max_abs_diff": float(max(diffs)),
    }
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="110m:1024x64", help="preset:seq_lenxbatch")
  parser.add_argument("--encoder", default="rope")
  parser.add_argument("--places", default="device,host", help="values of train.init_on to time")
  parser.add_argument(
    "--place_timeout",
    type=float,
    default=600,
    help="seconds a place may take before it is recorded as timed out",
  )
  parser.add_argument("--out", default="")
  parser.add_argument("--place", help=argparse.SUPPRESS)
  parser.add_argument("--sample", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.place:
    child(args)
    return
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  paths = {}
  with tempfile.TemporaryDirectory() as tmp:
    for place in args.places.split(","):
      paths[place] = os.path.join(tmp, f"{place}.npz")
      cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--shape",
        args.shape,
        "--encoder",
        args.encoder,
        "--place",
        place,
        "--sample",
        paths[place],
      ]
      try:
        proc = subprocess.run(
          cmd, capture_output=True, text=True, check=False, env=env, timeout=args.place_timeout
        )
      except subprocess.TimeoutExpired:
        write_json(
          args.out,
          {
            "shape": args.shape,
            "init_on": place,
            "error": f"not done after {args.place_timeout:.0f} s",
          },
        )
        paths.pop(place)
        continue
      if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        write_json(args.out, {"shape": args.shape, "init_on": place, "error": proc.returncode})
        paths.pop(place)
        continue
      write_json(args.out, json.loads(proc.stdout.strip().splitlines()[-1]))
    if len(paths) > 1:
      write_json(args.out, {"shape": args.shape, "compare": compare(paths)})


if __name__ == "__main__":
  main()
