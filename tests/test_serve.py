"""`jax-interact serve`: the WebSocket protocol of SPEC §10, a well-behaved and a faulty client."""

import asyncio
import base64
import dataclasses
import io
import signal

import aiohttp
import numpy as np
import pytest
from PIL import Image

from jax_interact import cli
from jax_interact.inference import engine as engine_lib
from jax_interact.serving import bundle
from jax_interact.serving import server as server_lib
from jax_interact.streams.tokenizer import DELEGATE
from served_model import running_server, write_workdir

CHUNK = 3200  # samples in 200 ms at 16 kHz
TURN_KEYS = {"type", "t", "text", "transcript", "missing", "step_ms", "delegated", "bg"}
MALFORMED = ["not json", '{"type": "dance"}', '{"type": "video", "jpeg": "@@not base64@@"}',
             '{"type": "text", "text": 7}', b"\x01\x02\x03"]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("serve")
  workdir = write_workdir(tmp / "run")
  assert cli.main(["export", "--workdir", str(workdir), "--out", str(tmp / "bundle"),
                   "--batch", "2"]) == 0
  return tmp / "bundle"


def user_audio() -> np.ndarray:
  """9.4 micro-turns of noise bursts as int16: the last chunk is completed with zeros."""
  rng = np.random.default_rng(0)
  samples = rng.uniform(-0.5, 0.5, 9 * CHUNK + 1234) * (rng.uniform(size=9 * CHUNK + 1234) > 0.3)
  return np.round(samples * 32767).astype("<i2")


def jpeg() -> str:
  image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 64, 3), np.uint8))
  buffer = io.BytesIO()
  image.save(buffer, format="JPEG")
  return base64.b64encode(buffer.getvalue()).decode()


async def receive_turns(ws, turns: list, errors: list, until) -> None:
  """Reads (turn, audio) pairs and errors into the lists until `until()` or the socket closes."""
  while not until():
    message = await ws.receive()
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING):
      return
    assert message.type == aiohttp.WSMsgType.TEXT, message
    payload = message.json()
    if payload["type"] == "error":
      errors.append(payload["message"])
      continue
    audio = await ws.receive()
    assert audio.type == aiohttp.WSMsgType.BINARY
    turns.append((payload, audio.data))


async def well_behaved(client, url, faulty_done: asyncio.Event):
  """Sends its audio in uneven pieces, waits for the faulty client to finish and for a turn
  without audio (its last, partial chunk waits for more), then ends."""
  async with client.ws_connect(f"{url}/session") as ws:
    ready = await ws.receive_json()
    pcm = user_audio().tobytes()
    for start, stop in ((0, 5000), (5000, 5778), (5778, 40000), (40000, len(pcm))):
      await ws.send_bytes(pcm[start:stop])
    turns, errors = [], []
    await receive_turns(ws, turns, errors, lambda: faulty_done.is_set() and turns and all(
        turn["missing"] for turn, _ in turns[-1:]) and sum(not t["missing"] for t, _ in turns) == 9)
    await ws.send_json({"type": "end"})
    await receive_turns(ws, turns, errors, lambda: False)
    return ready, turns, errors, ws.close_code


async def faulty(client, url, faulty_done: asyncio.Event):
  """Sends malformed messages, checks that its session goes on, the health and a full server,
  then disconnects without ending."""
  async with client.ws_connect(f"{url}/session") as ws:
    await ws.receive_json()
    for message in MALFORMED:
      await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
    turns, errors = [], []
    await receive_turns(ws, turns, errors, lambda: len(errors) == len(MALFORMED))
    await ws.send_json({"type": "video", "jpeg": jpeg()})
    await ws.send_json({"type": "text", "text": "hello there"})
    after = len(turns)
    await receive_turns(ws, turns, errors, lambda: len(turns) >= after + 3)
    health = await (await client.get(f"{url}/health")).json()
    async with client.ws_connect(f"{url}/session") as third:
      refusal = await third.receive_json()
      await third.receive()
      full_code = third.close_code
  faulty_done.set()
  return turns, errors, health, refusal, full_code


def replay(bundle_dir, session_id: str, turns: list) -> list[tuple[str, str]]:
  """(text, transcript) of each turn from the bundle's engine in this process, given the
  server's `missing` flags: audio chunks are heard in order, one per turn that is not missing."""
  loaded = bundle.load(bundle_dir)
  engine = engine_lib.Engine(loaded.program)
  row = engine.add(session_id)
  audio = np.concatenate([user_audio(), np.zeros(-len(user_audio()) % CHUNK, "<i2")])
  chunks = iter(audio.reshape(-1, CHUNK).astype(np.float32) / 32768)
  said = []
  for turn, _ in turns:
    chunk = None if turn["missing"] else engine_lib.Chunk(audio=next(chunks))
    out = engine.step({row: chunk})[row]
    said.append((loaded.tokenizer.decode(out.text_out),
                 loaded.tokenizer.decode(out.user_transcript)))
  return said


async def health_when_idle(client, url) -> dict:
  while True:
    health = await (await client.get(f"{url}/health")).json()
    if health["sessions"] == 0:
      return health
    await asyncio.sleep(0.1)


async def two_clients(url):
  faulty_done = asyncio.Event()
  async with aiohttp.ClientSession() as client:
    good, bad = await asyncio.gather(well_behaved(client, url, faulty_done),
                                     faulty(client, url, faulty_done))
    return good, bad, await health_when_idle(client, url)


def test_two_clients_one_faulty_over_the_protocol(bundle_dir):
  with running_server("--bundle", str(bundle_dir)) as (process, url):
    (ready, turns, errors, close_code), bad, idle = asyncio.run(two_clients(url))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0

  assert ready["type"] == "ready" and ready["chunk_ms"] == 200 and ready["sample_rate"] == 16000
  assert errors == [] and close_code == 1000
  assert [turn["t"] for turn, _ in turns] == list(range(len(turns)))
  for turn, audio in turns:
    assert set(turn) == TURN_KEYS and turn["type"] == "turn"
    assert isinstance(turn["text"], str) and isinstance(turn["transcript"], str)
    assert turn["delegated"] is False and turn["bg"] == "" and turn["step_ms"] > 0
    assert len(audio) == 2 * CHUNK  # 3200 PCM16 samples
  heard = [turn["t"] for turn, _ in turns if not turn["missing"]]
  # 9.4 chunks of audio, each heard once: the partial chunk after "end", as the last turn.
  assert len(heard) == 10 and heard[-1] == len(turns) - 1
  # Before that, with no audio left, the session went on with flagged turns.
  assert heard[-2] < heard[-1] - 1
  # Its outputs are those of the engine on the same input: the faulty client changed nothing.
  assert [(turn["text"], turn["transcript"]) for turn, _ in turns] == replay(
      bundle_dir, ready["session"], turns)

  bad_turns, bad_errors, health, refusal, full_code = bad
  assert len(bad_errors) == len(MALFORMED)  # one error each, none for the valid frame and text
  assert [turn["t"] for turn, _ in bad_turns] == list(range(len(bad_turns)))
  assert health["sessions"] == 2 and health["max_sessions"] == 2
  assert health["p99_tick_ms"] > 0
  assert refusal["type"] == "error" and "full" in refusal["message"] and full_code == 1013
  assert idle["sessions"] == 0


async def shutdown_while_connected(url, process):
  async with aiohttp.ClientSession() as client:
    async with client.ws_connect(f"{url}/session") as ws:
      assert (await ws.receive_json())["type"] == "ready"
      process.send_signal(signal.SIGTERM)
      turns, errors = [], []
      await receive_turns(ws, turns, errors, lambda: False)
      return errors, ws.close_code


def test_sigterm_tells_the_sessions_and_exits_cleanly(bundle_dir):
  with running_server("--bundle", str(bundle_dir)) as (process, url):
    errors, close_code = asyncio.run(shutdown_while_connected(url, process))
    assert process.wait(timeout=120) == 0
    assert "shutting down" in process.stdout.read()
  assert errors == ["server shutting down"] and close_code == 1001


def delegating(program):
  """The program with `<delegate>` put into the first text slot of micro-turn 1."""
  def step(params, state, inputs):
    state, out = program.step(params, state, inputs)
    text_BK = np.array(out["text_out"])
    text_BK[np.asarray(out["turn"]) == 1, 0] = DELEGATE
    return state, dict(out, text_out=text_BK)
  return dataclasses.replace(program, step=step)


async def delegate_session(served):
  server = server_lib.Server(served, max_sessions=1, background="tool:calculator")
  runner, port = await server_lib.start(server, "127.0.0.1", 0)
  try:
    async with aiohttp.ClientSession() as client:
      async with client.ws_connect(f"http://127.0.0.1:{port}/session") as ws:
        await ws.receive_json()
        await ws.send_json({"type": "text", "text": "what is 17 times 23"})
        await ws.send_bytes(np.zeros(20 * CHUNK, "<i2").tobytes())
        turns, errors = [], []
        await receive_turns(ws, turns, errors, lambda: "391" in "".join(t["bg"] for t, _ in turns))
        return turns, errors
  finally:
    await runner.cleanup()


def test_delegate_runs_a_background_job_whose_result_enters_the_turns(bundle_dir):
  loaded = bundle.load(bundle_dir)
  served = server_lib.Served(delegating(loaded.program), loaded.tokenizer, loaded.config, 0)
  turns, errors = asyncio.run(delegate_session(served))
  assert errors == []
  assert [turn["t"] for turn, _ in turns if turn["delegated"]] == [1]
  results = [turn for turn, _ in turns if turn["bg"]]
  assert results and results[0]["t"] > 1
  assert " ".join(turn["bg"] for turn in results).split() == "17 times 23 is 391".split()
