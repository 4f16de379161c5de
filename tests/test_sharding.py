"""Tests of meshes, sharding rules, sharded training equivalence and multi-process start-up."""

import dataclasses
import os
import socket
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from device_helpers import cpu_devices, cpu_mesh, on_cpu
from flax import nnx
from jax.sharding import PartitionSpec as P

from hope_jax.model import Transformer, create_sharded_model
from hope_jax.parallel import distributed, sharding
from hope_jax.training import step as train_step

RULES = sharding.DEFAULT_RULES
MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


def _mesh(shape) -> jax.sharding.Mesh:
  return cpu_mesh(*shape)


def _batch(seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 128, (8, 17), dtype=np.int32)
  segments = (np.arange(17)[None] >= rng.integers(2, 15, (8, 1))).astype(np.int32)
  return {"tokens": tokens, "segment_ids": segments}


def _sgd_step(config, shape):
  """Returns (metrics, params before, params after) of one SGD(lr=1) step on a mesh."""
  mesh, optimizer = _mesh(shape), optax.sgd(1.0)
  graphdef, state, shardings = train_step.create_train_state(
    config, optimizer, mesh=mesh, rules=RULES, seed=0
  )
  before = jax.tree.map(np.asarray, state.params)
  step = train_step.make_train_step(
    graphdef, optimizer, mesh=mesh, state_shardings=shardings, rules=RULES
  )
  state, metrics = step(state, train_step.global_batch(_batch(), mesh, RULES))
  return (
    {k: float(v) for k, v in metrics.items()},
    before,
    jax.tree.map(np.asarray, state.params),
    state,
  )


@pytest.fixture(scope="module")
def single_device_step():
  from hope_jax.model import TransformerConfig

  config = on_cpu(
    TransformerConfig(
      vocab_size=128,
      num_layers=2,
      embed_dim=64,
      num_heads=4,
      num_kv_heads=2,
      mlp_dim=128,
      dtype="float32",
      train_length=32,
      encoder="kerple",
    )
  )
  return config, _sgd_step(config, (1, 1, 1))


@pytest.mark.parametrize("shape", MESHES)
def test_sharded_step_matches_single_device(single_device_step, shape):
  config, (metrics, before, after, _) = single_device_step
  m_metrics, m_before, m_after, state = _sgd_step(config, shape)
  for a, b in zip(jax.tree.leaves(m_before), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)  # same initial parameters on every mesh
  assert m_metrics == pytest.approx(metrics, rel=1e-5)
  for a, b, p in zip(jax.tree.leaves(m_after), jax.tree.leaves(after), jax.tree.leaves(before)):
    np.testing.assert_allclose(a - p, b - p, rtol=1e-5, atol=2e-7)  # SGD(lr=1): −gradients
  if shape == (2, 2, 2):
    _check_specs(state)


def _check_specs(state: train_step.TrainState) -> None:
  """Asserts that parameters and Adam-like moments carry the shardings DEFAULT_RULES say."""
  expected = {
    "embedding": P("tensor", "fsdp"),
    "lm_head": P("fsdp", "tensor"),
    "final_norm/scale": P("fsdp"),
    "blocks/0/attn/q_proj": P("fsdp", "tensor", None),
    "blocks/0/attn/k_proj": P("fsdp", "tensor", None),
    "blocks/1/attn/o_proj": P("tensor", None, "fsdp"),
    "blocks/0/attn/kerple_p": P("tensor"),
    "blocks/0/mlp/gate": P("fsdp", "tensor"),
    "blocks/1/mlp/down": P("tensor", "fsdp"),
    "blocks/0/attn_norm/scale": P("fsdp"),
  }
  flat = {"/".join(map(str, path)): v for path, v in nnx.to_flat_state(state.params)}
  for name, spec in expected.items():
    assert flat[name][...].sharding.spec == spec, name
  q = flat["blocks/0/attn/q_proj"][...]
  assert q.addressable_shards[0].data.shape == (32, 2, 16)


@pytest.mark.slow
def test_splash_attention_on_a_mesh_matches_xla(tiny_config):
  """Splash (Pallas interpret mode off TPU, shard_mapped over batch and heads) vs XLA."""
  rng = np.random.default_rng(0)
  batch = {
    "tokens": rng.integers(0, 128, (4, 129), dtype=np.int32),
    "segment_ids": (np.arange(129)[None] >= rng.integers(10, 120, (4, 1))).astype(np.int32),
  }
  results = {}
  for impl, shape in (("splash", (2, 1, 2)), ("xla", (1, 1, 1))):
    config = dataclasses.replace(
      on_cpu(tiny_config(num_layers=1, encoder="hope", train_length=128)), attention_impl=impl
    )
    mesh, optimizer = _mesh(shape), optax.sgd(1.0)
    graphdef, state, shardings = train_step.create_train_state(config, optimizer, mesh=mesh)
    step = train_step.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings)
    state, metrics = step(state, train_step.global_batch(batch, mesh))
    results[impl] = [float(metrics["loss"]), float(metrics["grad_norm"])]
    if impl == "splash":
      with pytest.raises(ValueError, match="multiple of 128"):
        step(state, {"tokens": batch["tokens"][:, :17]})
  assert results["splash"] == pytest.approx(results["xla"], rel=1e-5)


def test_optimizer_state_is_sharded_like_params():
  from hope_jax.model import TransformerConfig

  config = on_cpu(
    TransformerConfig(
      vocab_size=128, num_layers=1, embed_dim=64, num_heads=4, mlp_dim=128, dtype="float32"
    )
  )
  mesh = _mesh((2, 2, 2))
  _, state, shardings = train_step.create_train_state(
    config, optax.adam(1e-3), mesh=mesh, rules=RULES
  )
  mu = state.opt_state[0].mu
  assert mu["blocks"][0]["mlp"]["up"][...].sharding.spec == P("fsdp", "tensor")
  assert shardings.params["embedding"].get_value().spec == P("tensor", "fsdp")
  assert state.step.sharding.spec == P()


def test_custom_rules_and_sharded_model_creation(single_device_step):
  config, (_, single_device_params, _, _) = single_device_step
  rules = sharding.freeze_rules(
    {
      "embed": None,
      "mlp": ("fsdp", "tensor"),
      "heads": "tensor",
      "kv_heads": "tensor",
      "vocab": None,
      "batch": "data",
    }
  )
  model = create_sharded_model(config, mesh=_mesh((1, 4, 2)), rules=rules, seed=0)
  assert model.blocks[0].mlp.gate[...].sharding.spec == P(None, ("fsdp", "tensor"))
  assert model.embedding[...].sharding.spec == P(None, None)
  assert model.blocks[0].attn.kerple_a[...].sharding.spec == P("tensor")
  assert model.blocks[0].mlp.gate[...].addressable_shards[0].data.shape == (64, 16)
  np.testing.assert_array_equal(
    model.blocks[1].mlp.down[...], single_device_params["blocks"][1]["mlp"]["down"][...]
  )


def test_logical_specs_and_constrain_outside_a_mesh(tiny_config):
  x = jnp.ones((4, 3))
  assert sharding.constrain(x, ("batch", None)) is x
  assert sharding.logical_spec(("batch", "embed", None), RULES) == P(("data", "fsdp"), "fsdp", None)
  overlapping = {"batch": ("data", "fsdp"), "mlp": ("fsdp", "tensor")}
  assert sharding.logical_spec(("batch", "length", "mlp"), overlapping, dedupe=True) == P(
    ("data", "fsdp"), None, "tensor"
  )
  abstract = nnx.state(nnx.eval_shape(lambda: Transformer(tiny_config(), rngs=nnx.Rngs(0))))
  with pytest.raises(ValueError, match="o_proj.*uses a mesh axis twice"):
    sharding.param_specs(abstract, {"embed": "tensor", "heads": "tensor"})
  with pytest.raises(ValueError, match="unknown logical axis 'emb'"):
    sharding.freeze_rules({"emb": "fsdp"})


@pytest.mark.parametrize(
  "mesh_fields, message",
  [
    (dict(data=3), "data=3"),
    (dict(data=-1, fsdp=-1), "fsdp=-1"),
    (dict(data=4, fsdp=4, tensor=1), "multiply to 16"),
    (dict(data=0), "data=0"),
  ],
)
def test_bad_mesh_configs_name_the_field(mesh_fields, message):
  with pytest.raises(ValueError, match=message):
    sharding.make_mesh(sharding.MeshConfig(**mesh_fields), cpu_devices(8))
  with pytest.raises(ValueError, match="unknown MeshConfig field"):
    sharding.MeshConfig.from_mapping({"model": 2})


@pytest.mark.parametrize(
  "shape, overrides, message",
  [
    ((1, 1, 8), {}, "num_heads=4"),
    ((1, 2, 4), dict(num_heads=8, num_kv_heads=2), "num_kv_heads=2"),
    ((2, 1, 4), dict(num_kv_heads=4, mlp_dim=130), "mlp_dim=130"),
    ((4, 1, 2), dict(vocab_size=129), "vocab_size=129"),
    ((1, 8, 1), dict(embed_dim=60, head_dim=16), "embed_dim=60"),
  ],
)
def test_unshardable_models_fail_before_compiling(
  tiny_config, monkeypatch, shape, overrides, message
):
  config, mesh = on_cpu(tiny_config(**overrides)), _mesh(shape)

  def no_compiling(*args, **kwargs):
    raise AssertionError("compiled before validating")

  monkeypatch.setattr(jax, "jit", no_compiling)
  with pytest.raises(ValueError, match=message):
    train_step.create_train_state(config, optax.sgd(0.1), mesh=mesh, rules=RULES)


def test_initialize_distributed_detection(monkeypatch):
  assert distributed.detect_cluster({}) is None
  assert distributed.detect_cluster({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "1"}) is None
  assert distributed.detect_cluster({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"}) == "slurm"
  assert distributed.detect_cluster({"TPU_WORKER_HOSTNAMES": "a,b"}) == "tpu"
  assert distributed.detect_cluster({"JAX_COORDINATOR_ADDRESS": "h:1"}) == "coordinator"
  for name in (
    "JAX_COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
    "SLURM_JOB_ID",
    "MEGASCALE_COORDINATOR_ADDRESS",
    "OMPI_COMM_WORLD_SIZE",
  ):
    monkeypatch.delenv(name, raising=False)
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
  assert distributed.initialize_distributed("auto") is False
  assert distributed.initialize_distributed(False) is False
  assert calls == []
  with pytest.raises(ValueError, match="enabled='yes'"):
    distributed.initialize_distributed("yes")


_WORKER = textwrap.dedent("""
    import sys
    import numpy as np, optax, jax
    from hope_jax.parallel import distributed
    from hope_jax.parallel import sharding
    from hope_jax.training import step as train_step
    from hope_jax.model import TransformerConfig
    port, pid = sys.argv[1], int(sys.argv[2])
    assert distributed.initialize_distributed(True, coordinator_address=f"localhost:{port}",
                                              num_processes=2, process_id=pid)
    assert jax.device_count() == 8 and jax.local_device_count() == 4
    config = TransformerConfig(vocab_size=128, num_layers=2, embed_dim=64, num_heads=4,
                               num_kv_heads=2, mlp_dim=128, dtype="float32", train_length=32)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    graphdef, state, shardings = train_step.create_train_state(config, optax.sgd(1.0), mesh=mesh)
    step = train_step.make_train_step(graphdef, optax.sgd(1.0), mesh=mesh,
                                      state_shardings=shardings)
    tokens = np.random.default_rng(0).integers(0, 128, (8, 17), dtype=np.int32)
    local = {"tokens": tokens[4 * pid:4 * pid + 4]}
    state, metrics = step(state, train_step.global_batch(local, mesh))
    print("LOSS", repr(float(metrics["loss"])), repr(float(metrics["grad_norm"])))
""")


# In the default run (about 45 s on two cores): a regression here once hid among the slow tests.
def test_two_processes_match_single_process(tiny_config, tmp_path):
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  script = tmp_path / "worker.py"
  script.write_text(_WORKER)
  env = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]),
  }
  procs = [
    subprocess.Popen(
      [sys.executable, str(script), str(port), str(i)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  outputs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  results = [
    [float(x) for x in line.split()[1:]]
    for out in outputs
    for line in out.splitlines()
    if line.startswith("LOSS")
  ]
  assert len(results) == 2 and results[0] == results[1]
  config = on_cpu(tiny_config())
  mesh = _mesh((1, 1, 1))
  graphdef, state, shardings = train_step.create_train_state(config, optax.sgd(1.0), mesh=mesh)
  step = train_step.make_train_step(graphdef, optax.sgd(1.0), mesh=mesh, state_shardings=shardings)
  tokens = np.random.default_rng(0).integers(0, 128, (8, 17), dtype=np.int32)
  _, metrics = step(state, train_step.global_batch({"tokens": tokens}, mesh))
  assert results[0] == pytest.approx(
    [float(metrics["loss"]), float(metrics["grad_norm"])], rel=1e-5
  )


def test_host_init_matches_device_init_and_shards():
  from hope_jax.model import TransformerConfig

  config = on_cpu(
    TransformerConfig(
      vocab_size=128, num_layers=2, embed_dim=64, num_heads=4, mlp_dim=128, dtype="float32"
    )
  )
  mesh = _mesh((2, 2, 2))
  built = {
    place: train_step.create_train_state(
      config, optax.adam(1e-3), mesh=mesh, rules=RULES, seed=3, init_on=place
    )
    for place in ("device", "host")
  }
  (_, device_state, shardings), (_, host_state, _) = built["device"], built["host"]
  leaves = [jax.tree.leaves(t) for t in (device_state, host_state, shardings)]
  assert len(leaves[0]) == len(leaves[1]) == len(leaves[2]) > 10
  for device_leaf, host_leaf, spec in zip(*leaves):
    assert host_leaf.sharding == spec
    np.testing.assert_array_equal(np.asarray(host_leaf), np.asarray(device_leaf))
  assert host_state.params["blocks"][1]["mlp"]["up"][...].sharding.spec == P("fsdp", "tensor")
  with pytest.raises(ValueError, match="init_on must be one of .* got 'gpu'"):
    train_step.create_train_state(config, optax.sgd(1.0), mesh=mesh, init_on="gpu")
