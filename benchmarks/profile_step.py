"""Profile of our train step: where the device time goes, by kernel class and by source line.

    XLA_FLAGS=--xla_dump_to=DIR/hlo python3 benchmarks/profile_step.py --shape 110m:1024x64 \
        --encoder rope --out DIR

Builds the step exactly as train_throughput.py does, warms it up, traces --steps steps with
jax.profiler (DIR/trace/…/perfetto_trace.json.gz) and prints the device time per step grouped by
kernel class, then the top HLO ops.  With the optimized HLO dumped (XLA_FLAGS above), each op is
attributed to the source lines its instructions come from (e.g. ``encoders.py:242``), so
``summarize`` can also run later, on this machine, over a trace and dump brought back.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re

import jax

from train_throughput import build_step  # noqa: I001

# Kernel classes, first match wins (kernel names as the CUDA profiler reports them).
KERNEL_CLASSES: tuple[tuple[str, str], ...] = (
    ("attention (cuDNN)", r"cudnn|fmha|flash|sdpa"),
    ("matmul", r"gemm|xmma|cutlass|sm90_|sm80_|ampere|hopper|wgmma|triton_gemm|cublas"),
    ("collective", r"nccl|all_reduce|all_gather|reduce_scatter"),
    ("copy", r"memcpy|memset|copy"),
    ("reduction fusion", r"reduce|reduction"),
    ("other fusion", r"fusion|loop_|input_|triton"),
)
_SOURCE = re.compile(r'source_file="([^"]+)" source_line=(\d+)')
_FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_TABLE_ROW = re.compile(r'^(\d+) (?:"(.*)"|\{(.*)\})$')


def kernel_class(name: str) -> str:
  """Returns the class of a kernel name (see KERNEL_CLASSES), or "other"."""
  for label, pattern in KERNEL_CLASSES:
    if re.search(pattern, name, re.IGNORECASE):
      return label
  return "other"


def load_events(trace_dir: str) -> list[dict]:
  """Returns the complete ("X") events of the newest perfetto trace under trace_dir, named by thread."""
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"),
                           recursive=True))
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under trace_dir={trace_dir!r}")
  with gzip.open(paths[-1], "rt", encoding="utf-8") as f:
    trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  processes, threads = {}, {}
  for e in events:
    if e.get("ph") == "M" and e.get("name") == "process_name":
      processes[e["pid"]] = e["args"]["name"]
    if e.get("ph") == "M" and e.get("name") == "thread_name":
      threads[(e["pid"], e["tid"])] = e["args"]["name"]
  out = []
  for e in events:
    if e.get("ph") == "X":
      out.append({**e, "process": processes.get(e["pid"], ""),
                  "thread": threads.get((e["pid"], e.get("tid")), "")})
  return out


def _stack_frame_locations(lines: list[str]) -> dict[str, str]:
  """Maps each stack_frame_id of an HLO text dump to its innermost "file.py:line"."""
  tables: dict[str, dict[str, str]] = collections.defaultdict(dict)
  table = None
  for line in lines:
    if line in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
      table = line
      continue
    row = _TABLE_ROW.match(line) if table else None
    if not row:
      if table and tables[table]:
        table = None if table == "StackFrames" else table
      continue
    tables[table][row.group(1)] = row.group(2) if row.group(2) is not None else row.group(3)
  fields = lambda text: dict(re.findall(r"(\w+)=(\d+)", text))  # noqa: E731
  locations = {}
  for frame, text in tables["StackFrames"].items():
    location = fields(tables["FileLocations"].get(fields(text).get("file_location_id", ""), ""))
    name = tables["FileNames"].get(location.get("file_name_id", ""), "?")
    locations[frame] = f"{os.path.basename(name)}:{location.get('line', '?')}"
  return locations


def source_lines_by_op(hlo_dir: str, module: str = "jit_step") -> dict[str, collections.Counter]:
  """Maps each top-level instruction of the optimized module to the source lines it fuses."""
  paths = sorted(glob.glob(os.path.join(hlo_dir, f"*{module}*after_optimizations.txt")))
  if not paths:
    return {}
  with open(paths[-1], encoding="utf-8") as f:
    lines = f.read().splitlines()
  frames = _stack_frame_locations(lines)
  per_computation: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  calls: dict[str, str] = {}
  current = None
  for line in lines:
    match = _COMPUTATION.match(line)
    if match:
      current = match.group(1)
      continue
    instruction = _INSTRUCTION.match(line)
    if not instruction or current is None:
      continue
    sources = [f"{os.path.basename(p)}:{n}" for p, n in _SOURCE.findall(line)]
    sources += [frames[i] for i in _FRAME_ID.findall(line) if i in frames]
    per_computation[current].update(sources)
    called = _CALLS.search(line)
    if called:
      calls[instruction.group(1)] = called.group(1)
    elif sources:
      per_computation[instruction.group(1)].update(sources)
  result = {}
  for op, computation in calls.items():
    result[op] = per_computation.get(computation, collections.Counter())
  for computation, counter in per_computation.items():
    result.setdefault(computation, counter)
  return result


def device_events(events: list[dict]) -> tuple[list[dict], list[dict]]:
  """Returns (kernel events of the device streams, events of the device's "XLA Ops" line)."""
  device = [e for e in events if re.search(r"/device:|GPU|TPU", e["process"])
            and "host" not in e["process"].lower()]
  ops = [e for e in device if e["thread"] == "XLA Ops"]
  kernels = [e for e in device if not re.search(r"XLA (Modules|Ops|TraceMe)|Steps|Framework",
                                                e["thread"])]
  return kernels or device, ops


def summarize(trace_dir: str, hlo_dir: str = "", *, steps: int, top: int = 30) -> str:
  """Returns a markdown report: device ms per step by kernel class and by HLO op with sources."""
  kernels, ops = device_events(load_events(trace_dir))
  sources = source_lines_by_op(hlo_dir) if hlo_dir else {}
  total = sum(e.get("dur", 0) for e in kernels) / 1e3 / steps
  by_class: collections.Counter = collections.Counter()
  by_op: collections.Counter = collections.Counter()
  kernel_of_op: dict[str, str] = {}
  for e in kernels:
    ms = e.get("dur", 0) / 1e3 / steps
    by_class[kernel_class(e["name"])] += ms
    op = e.get("args", {}).get("hlo_op")
    kernel_of_op.setdefault(op or e["name"], e["name"])
    if not ops:
      by_op[op or e["name"]] += ms
  for e in ops:
    by_op[e["name"]] += e.get("dur", 0) / 1e3 / steps
  out = [f"device busy time per step: {total:.2f} ms ({len(kernels)} kernel events, {steps} "
         f"steps; {'XLA Ops line' if ops else 'kernel args'} for the op table)",
         "", "| kernel class | ms/step | share |", "|---|---|---|"]
  for label, ms in by_class.most_common():
    out.append(f"| {label} | {ms:.2f} | {ms / total:.1%} |")
  out += ["", f"| top {top} HLO ops | ms/step | kernel | source lines |", "|---|---|---|---|"]
  for op, ms in by_op.most_common(top):
    lines = ", ".join(f"{k}×{v}" for k, v in sources.get(op, collections.Counter()).most_common(4))
    out.append(f"| {op} | {ms:.3f} | {kernel_of_op.get(op, '')[:60]} | {lines} |")
  by_source: collections.Counter = collections.Counter()
  for op, ms in by_op.items():
    counter = sources.get(op)
    by_source[counter.most_common(1)[0][0] if counter else "(no source)"] += ms
  if sources:
    out += ["", "| main source line of the op | ms/step |", "|---|---|"]
    out += [f"| {line} | {ms:.2f} |" for line, ms in by_source.most_common(top)]
  return "\n".join(out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="110m:1024x64", help="preset:seq_lenxbatch")
  parser.add_argument("--encoder", default="rope")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--attention_impl", default="auto")
  parser.add_argument("--remat", default="none")
  parser.add_argument("--out", required=True)
  parser.add_argument("--summarize_only", action="store_true",
                      help="only summarize an existing --out (trace/ and hlo/ inside it)")
  args = parser.parse_args()
  trace_dir, hlo_dir = os.path.join(args.out, "trace"), os.path.join(args.out, "hlo")
  if not args.summarize_only:
    size, dims = args.shape.split(":")
    seq_len, batch = map(int, dims.split("x"))
    one, _, _ = build_step(size, args.encoder, seq_len, batch, attention_impl=args.attention_impl,
                           remat=args.remat)
    for _ in range(args.warmup):
      jax.block_until_ready(one())
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.steps):
        jax.block_until_ready(one())
    kernels, ops = device_events(load_events(trace_dir))
    keep = ("name", "dur", "ts", "thread", "args")
    with gzip.open(os.path.join(args.out, "device_events.json.gz"), "wt", encoding="utf-8") as f:
      json.dump([{k: e[k] for k in keep if k in e} for e in kernels + ops], f)
  report = summarize(trace_dir, hlo_dir, steps=args.steps)
  with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"# {args.shape} {args.encoder}\n\n{report}\n")
  print(report)


if __name__ == "__main__":
  main()
