"""Profile of our train step: where the device time goes, by kernel class and by source line.

    XLA_FLAGS=--xla_dump_to=DIR/hlo python3 benchmarks/profile_step.py --shape 110m:1024x64 \
        --encoder rope --out DIR

Builds the step exactly as train_throughput.py does, warms it up, traces --steps steps with
jax.profiler (DIR/trace/…/perfetto_trace.json.gz, its device kernels kept in
DIR/device_events.json.gz) and writes DIR/summary.md: device time per step by kernel class, the
top kernels, and time by source line.  With the optimized HLO dumped (XLA_FLAGS above), each fused
kernel is tied to its instruction and the innermost source line it comes from (``model.py:179``),
and gets an achieved bandwidth (its operands read and results written once, per call time);
library kernels (cuBLAS, cuDNN) carry no HLO name.  ``--summarize_only`` re-reads DIR, e.g. after
bringing it back from the device.
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
from common import add_model_args, model_fields, parse_shape, set_projection_tiles  # noqa: I001
from train_throughput import build_step

# Kernel classes, first match wins (kernel names as the CUDA profiler reports them).
KERNEL_CLASSES: tuple[tuple[str, str], ...] = (
  ("attention (cuDNN)", r"cudnn|fmha|flash|sdpa"),
  ("matmul", r"gemm|xmma|cutlass|sm90_|sm80_|ampere|hopper|wgmma|triton_gemm|cublas|mosaic_gpu"),
  ("collective", r"nccl|all_reduce|all_gather|reduce_scatter"),
  ("copy", r"memcpy|memset|copy"),
  ("reduction fusion", r"reduce|reduction"),
  ("other fusion", r"fusion|loop_|input_|triton"),
)
_SOURCE = re.compile(r'source_file="([^"]+)" source_line=(\d+)')
_FRAME_ID = re.compile(r"stack_frame_id=(\d+)")
_TABLE_ROW = re.compile(r'^(\d+) (?:"(.*)"|\{(.*)\})$')
_ARRAY = re.compile(r"\b([a-z]+[0-9a-z]*)\[([\d,]*)\]")
_COMPUTATION = re.compile(r"^%?([\w.\-]+) \((.*)\) -> (.*) \{$")
_DTYPE_BYTES = {
  "pred": 1,
  "s8": 1,
  "u8": 1,
  "bf16": 2,
  "f16": 2,
  "s16": 2,
  "u16": 2,
  "f32": 4,
  "s32": 4,
  "u32": 4,
  "f64": 8,
  "s64": 8,
  "u64": 8,
}


def kernel_class(name: str) -> str:
  """Returns the class of a kernel name (see KERNEL_CLASSES), or "other"."""
  for label, pattern in KERNEL_CLASSES:
    if re.search(pattern, name, re.IGNORECASE):
      return label
  return "other"


def load_events(trace_dir: str) -> list[dict]:
  """Returns the complete ("X") events of the newest perfetto trace under trace_dir, named by thread."""
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))
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
      out.append(
        {
          **e,
          "process": processes.get(e["pid"], ""),
          "thread": threads.get((e["pid"], e.get("tid")), ""),
        }
      )
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


def array_bytes(text: str) -> int:
  """Returns the bytes of every array shape written in an HLO text fragment (``bf16[64,768]``)."""
  total = 0
  for dtype, dims in _ARRAY.findall(text):
    count = 1
    for dim in filter(None, dims.split(",")):
      count *= int(dim)
    total += count * _DTYPE_BYTES.get(dtype, 0)
  return total


def hlo_instructions(hlo_dir: str, module: str = "jit_step") -> dict[str, list[dict]]:
  """Maps kernel-style names (``loop_add_fusion_23``) to the optimized module's instructions.

  Each instruction is described by its shape, the innermost source line of its metadata
  (``model.py:179``) and the tail of its op_name; a kernel name matches an instruction's name or
  its ``deduplicated_name`` with dots as underscores, as the CUDA profiler spells them.
  """
  paths = sorted(glob.glob(os.path.join(hlo_dir, f"*{module}*after_optimizations.txt")))
  if not paths:
    return {}
  with open(paths[-1], encoding="utf-8") as f:
    lines = f.read().splitlines()
  frames = _stack_frame_locations(lines)
  parameter_bytes = {
    m.group(1): array_bytes(m.group(2)) for m in map(_COMPUTATION.match, lines) if m
  }
  index: dict[str, list[dict]] = collections.defaultdict(list)
  for line in lines:
    match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ", line)
    if not match:
      continue
    fusion = re.search(r" = (.*?) fusion\(.*calls=%?([\w.\-]+)", line)
    frame = _FRAME_ID.search(line)
    source = _SOURCE.search(line)
    op_name = re.search(r'op_name="([^"]+)"', line)
    info = {
      "shape": match.group(2)[:48],
      "source": (
        f"{os.path.basename(source.group(1))}:{source.group(2)}"
        if source
        else frames.get(frame.group(1), "")
        if frame
        else ""
      ),
      "op": op_name.group(1).split("/")[-1][:40] if op_name else "",
      # A fusion's traffic if it reads each operand and writes each result once.
      "bytes": (
        array_bytes(fusion.group(1)) + parameter_bytes.get(fusion.group(2), 0) if fusion else 0
      ),
    }
    names = {match.group(1)}
    deduplicated = re.search(r'deduplicated_name="([^"]+)"', line)
    if deduplicated:
      names.add(deduplicated.group(1))
    for name in names:
      index[name.replace(".", "_")].append(info)
  return index


def read_device_events(directory: str) -> list[dict]:
  """Returns the kernel events from directory/device_events.json.gz, or from its trace/."""
  saved = os.path.join(directory, "device_events.json.gz")
  if os.path.exists(saved):
    with gzip.open(saved, "rt", encoding="utf-8") as f:
      return json.load(f)
  return device_events(load_events(os.path.join(directory, "trace")))


def device_events(events: list[dict]) -> list[dict]:
  """Returns the kernel events of the device streams (not host threads, not derived lines)."""
  device = [
    e
    for e in events
    if re.search(r"/device:|GPU|TPU", e["process"]) and "host" not in e["process"].lower()
  ]
  kernels = [
    e for e in device if not re.search(r"XLA (Modules|Ops|TraceMe)|Steps|Framework", e["thread"])
  ]
  return kernels or device


def summarize(directory: str, *, steps: int, top: int = 30) -> str:
  """Returns a markdown report of directory's profile: ms per step by kernel class and kernel."""
  kernels = read_device_events(directory)
  index = hlo_instructions(os.path.join(directory, "hlo"))
  per_step = lambda us: us / 1e3 / steps  # noqa: E731
  total = per_step(sum(e.get("dur", 0) for e in kernels))
  by_class: collections.Counter = collections.Counter()
  by_kernel: collections.Counter = collections.Counter()
  calls: collections.Counter = collections.Counter()
  for e in kernels:
    by_class[kernel_class(e["name"])] += per_step(e.get("dur", 0))
    by_kernel[e["name"]] += per_step(e.get("dur", 0))
    calls[e["name"]] += 1
  out = [
    f"device busy time per step: {total:.2f} ms ({len(kernels) // steps} kernels per step, "
    f"{steps} steps)",
    "",
    "| kernel class | ms/step | share |",
    "|---|---|---|",
  ]
  out += [f"| {label} | {ms:.2f} | {ms / total:.1%} |" for label, ms in by_class.most_common()]
  out += [
    "",
    f"| top {top} kernels | ms/step | calls/step | GB/s | HLO shape | source lines (op) |",
    "|---|---|---|---|---|---|",
  ]
  by_source: collections.Counter = collections.Counter()
  for name, ms in by_kernel.most_common():
    infos = index.get(name, [])
    sources = collections.Counter(i["source"] for i in infos if i["source"])
    main = sources.most_common(1)[0][0] if sources else f"({kernel_class(name)}, no HLO name)"
    by_source[main] += ms
    if len(out) < top + 8:
      where = ", ".join(f"{k}×{v}" for k, v in sources.most_common(3))
      op = infos[0]["op"] if infos else ""
      shape = infos[0]["shape"] if infos else ""
      moved = infos[0]["bytes"] if infos else 0
      rate = f"{moved / (ms / 1e3 * steps / calls[name]) / 1e9:.0f}" if moved and ms else ""
      out.append(
        f"| {name[:64]} | {ms:.3f} | {calls[name] / steps:g} | {rate} | {shape} | {where} ({op}) |"
      )
  out += ["", "| main source line | ms/step |", "|---|---|"]
  out += [f"| {line} | {ms:.2f} |" for line, ms in by_source.most_common(top)]
  return "\n".join(out)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="110m:1024x64", help="preset:seq_lenxbatch")
  parser.add_argument("--encoder", default="rope")
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--warmup", type=int, default=5)
  add_model_args(parser)
  parser.add_argument("--out", required=True)
  parser.add_argument(
    "--summarize_only",
    action="store_true",
    help="only summarize an existing --out (its device events and hlo/)",
  )
  args = parser.parse_args()
  set_projection_tiles(args)
  trace_dir = os.path.join(args.out, "trace")
  if not args.summarize_only:
    size, seq_len, batch = parse_shape(args.shape)
    one, _, _ = build_step(size, args.encoder, seq_len, batch, **model_fields(args))
    for _ in range(args.warmup):
      jax.block_until_ready(one())
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.steps):
        jax.block_until_ready(one())
    keep = ("name", "dur", "ts", "thread", "args")
    with gzip.open(os.path.join(args.out, "device_events.json.gz"), "wt", encoding="utf-8") as f:
      json.dump(
        [{k: e[k] for k in keep if k in e} for e in device_events(load_events(trace_dir))], f
      )
  report = summarize(args.out, steps=args.steps)
  with open(os.path.join(args.out, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"# {args.shape} {args.encoder}\n\n{report}\n")
  print(report)


if __name__ == "__main__":
  main()
