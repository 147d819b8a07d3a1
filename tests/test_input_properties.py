"""Property tests of the input readers: whatever arrives, the engine's chunk validation, the
episode record reader and the manifest reader either accept it or raise a one-line InputError,
and a refused chunk leaves every session as it was. Never another exception."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_dataset import tiny_episode, write_tiny_dataset
from test_trainer import SMALL, TINY

from data_pipelines import array_records, dataset
from jax_interact import config as config_lib
from jax_interact import models
from jax_interact.errors import InputError
from jax_interact.inference import engine as engine_lib
from jax_interact.inference import session
from jax_interact.streams.episode import EXAMPLE_KEYS

# Few examples, the same each run (the suite runs on 2 cores); PROPERTY_EXAMPLES=1000 searches
# harder.
SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", 40)), deadline=None,
                    derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=8)
small_arrays = hnp.arrays(
    st.sampled_from([np.float32, np.float64, np.float16, np.int16, np.int64, np.uint8, np.bool_,
                     np.complex64, np.str_]),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3))
junk = json_values | small_arrays | st.binary(max_size=8) | st.just([[1, 2], [3]])  # ragged


def one_line(error: InputError) -> None:
  assert "\n" not in str(error), str(error)


# The engine ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
  config = config_lib.load(TINY, [o for o in SMALL if o.startswith(("model.", "stream."))])
  engine = engine_lib.Engine(
      session.program(models.build(config, nnx.Rngs(0)), config), batch_size=2)
  engine.add("listener")  # row 0; row 1 stays free
  return engine


def snapshot(engine):
  """Everything a step may change: the device state and each row's host state."""
  rows = [None if r is None else (r.session_id, r.audio_context, list(r.pending_text),
                                  list(r.pending_bg)) for r in engine.rows]
  return jax.tree.leaves(jax.device_get(engine.state)), rows


def assert_same_snapshot(a, b):
  (leaves_a, rows_a), (leaves_b, rows_b) = a, b
  assert all(np.array_equal(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))
  for row_a, row_b in zip(rows_a, rows_b, strict=True):
    assert (row_a is None) == (row_b is None)
    if row_a is not None:
      assert row_a[0] == row_b[0] and row_a[2:] == row_b[2:]
      assert (row_a[1] is None and row_b[1] is None) or np.array_equal(row_a[1], row_b[1])


@st.composite
def audio(draw):
  """Well-shaped float audio (sometimes with a NaN or inf sample), or anything else."""
  if draw(st.booleans()):
    return draw(junk)
  samples = 3200  # 200 ms at 16 kHz
  dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
  wave = np.random.default_rng(draw(st.integers(0, 2**16))).uniform(-1, 1, samples)
  wave = wave.astype(dtype)
  if draw(st.booleans()):
    wave[draw(st.integers(0, samples - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
  return wave


frames = (hnp.arrays(np.uint8, st.tuples(st.integers(0, 12), st.integers(0, 12),
                                         st.integers(1, 4)))
          | junk)
text_ids = (st.tuples(*[st.integers(-3, 70)] * 2) | st.lists(st.integers(-3, 70), max_size=3)
            | st.tuples(st.sampled_from([1.5, "7", None, True, np.int32(3)])) | junk)
chunks = st.none() | st.builds(engine_lib.Chunk, audio=st.none() | audio(),
                               frame=st.none() | frames, text_ids=text_ids) | junk
rows = st.sampled_from([0, 0, 0, 1, -1, 2, True, "0", 0.0, None])


@SETTINGS
@given(step_chunks=st.dictionaries(rows, chunks, max_size=2) | junk)
def test_a_step_takes_any_chunks_or_refuses_them_leaving_every_session_as_it_was(engine,
                                                                                 step_chunks):
  before = snapshot(engine)
  try:
    outputs = engine.step(step_chunks)
  except InputError as e:
    one_line(e)
    assert_same_snapshot(snapshot(engine), before)
  else:
    assert set(outputs) == {0}


# Episode records -----------------------------------------------------------------------------

VALID_EXAMPLE = tiny_episode(3).to_example()


@st.composite
def examples(draw):
  """A stored record with random damage: keys dropped or added, values replaced (arrays of any
  dtype and shape, JSON, bytes), NaN timestamps, or a `meta` JSON with fields broken."""
  example = dict(VALID_EXAMPLE)
  meta = json.loads(example["meta"])
  for _ in range(draw(st.integers(1, 3))):
    damage = draw(st.sampled_from(["drop", "add", "replace", "nan_times", "meta_field",
                                   "word_field", "meta_text"]))
    if damage == "drop":
      example.pop(draw(st.sampled_from(EXAMPLE_KEYS)), None)
    elif damage == "add":
      example[draw(st.text(max_size=6))] = draw(junk)
    elif damage == "replace":
      example[draw(st.sampled_from(EXAMPLE_KEYS))] = draw(junk)
    elif damage == "nan_times" and np.shape(example.get("video_times_s", ()))[:1] == (8,):
      times = np.array(example["video_times_s"], np.float32)
      times[0] = draw(st.sampled_from([np.nan, np.inf]))
      example["video_times_s"] = times
    elif damage == "meta_field" and isinstance(meta, dict):
      meta[draw(st.sampled_from(["task", "words", "events", "annotations", "extra"]))] = draw(
          json_values)
    elif damage == "word_field" and isinstance(meta, dict) and isinstance(
        meta.get("words"), list) and meta["words"] and isinstance(meta["words"][0], dict):
      meta["words"][0] = {**meta["words"][0], draw(st.sampled_from(
          ["speaker", "text", "start_s", "end_s", "extra"])): draw(json_values)}
    elif damage == "meta_text":
      meta = draw(st.text(max_size=10))
    if "meta" in example and damage.startswith(("meta", "word")):
      example["meta"] = meta if isinstance(meta, str) else json.dumps(meta)
  return example


@SETTINGS
@given(example=examples())
def test_a_stored_record_reads_as_a_valid_episode_or_an_input_error(example):
  source = dataset.EpisodeSource([example], "data:train")
  try:
    episode = source[0]
  except InputError as e:
    one_line(e)
    assert e.where.startswith("data:train[0]")
  else:
    episode.validate()
    assert episode.to_example().keys() == VALID_EXAMPLE.keys()


# Manifests -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory):
  """A dataset whose manifest.json each example replaces (the shards stay)."""
  root = tmp_path_factory.mktemp("manifests")
  write_tiny_dataset(root / "ds", 3)
  os.mkdir(root / "edited")
  os.symlink(root / "ds" / dataset.TFDS_DIR, root / "edited" / dataset.TFDS_DIR)
  shutil.copy(root / "ds" / dataset.TOKENIZER, root / "edited" / dataset.TOKENIZER)
  return root


@st.composite
def manifests(draw, valid):
  """Manifest text: the valid one with fields replaced, removed or added, or any JSON or bytes."""
  kind = draw(st.sampled_from(["edited", "edited", "edited", "json", "bytes"]))
  if kind == "bytes":
    return draw(st.binary(max_size=20))
  if kind == "json":
    return json.dumps(draw(json_values)).encode()
  manifest = json.loads(json.dumps(valid))
  for _ in range(draw(st.integers(1, 3))):
    path = draw(st.sampled_from([
        ("episodes",), ("splits",), ("tfds_dir",), ("part",), ("splits", "train"),
        ("splits", "validation"), ("episodes", 0), ("episodes", 0, "index"),
        ("episodes", 1, "duration_s"), ("episodes", 0, "words"), ("episodes", 2, "events"),
        ("splits", "train", 0)]))
    value = draw(json_values | st.sampled_from([float("nan"), 99, -1, "/etc", "../ds", True]))
    node = manifest
    for key in path[:-1]:
      node = child(node, key)
    if isinstance(node, dict) and draw(st.booleans()):
      node.pop(path[-1], None)
    elif isinstance(node, dict) or child(node, path[-1]) is not None:
      node[path[-1]] = value
  return json.dumps(manifest).encode()


def child(node, key):
  """node[key] where that exists, else None."""
  if isinstance(node, dict):
    return node.get(key)
  if isinstance(node, list) and isinstance(key, int) and key < len(node):
    return node[key]
  return None


VALID_MANIFEST = {}


@SETTINGS
@given(data=st.data())
def test_a_manifest_reads_whole_or_as_an_input_error(manifest_dir, data):
  if not VALID_MANIFEST:
    VALID_MANIFEST.update(json.loads((manifest_dir / "ds" / dataset.MANIFEST).read_text()))
  edited = manifest_dir / "edited"
  (edited / dataset.MANIFEST).write_bytes(data.draw(manifests(VALID_MANIFEST)))
  try:
    manifest = dataset.read_manifest(edited)
    for split in array_records.SPLITS:
      source = dataset.open_split(edited, split)
      for i in range(len(source)):
        source[i]
    for entry in manifest["episodes"]:
      dataset.episode_by_index(edited, entry["index"])
  except InputError as e:
    one_line(e)
