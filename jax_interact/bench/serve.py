"""`jax-interact bench serve`: the WebSocket server under load (random weights).

The server (serving/server.py) runs on its own event loop in a thread, the clients on the main
one, all on loopback. Each well-behaved client streams the user audio of a held-out episode (the
dataset's validation split with --data, else freshly generated synthetic episodes) at real-time
pace, 40 ms at a time, looping it, and counts its turns, its audio and the turns the server
flagged missing (its audio had not arrived by the tick). For 1, 2, 4, ... up to --clients
clients, each with a server of that many rows, it records the server's tick times (p50, p99;
a tick = taking the input, one engine step, vocoding, queueing the replies) and calls the
count held in real time when p99 tick <= 200 ms and no chunk was missed; the most clients held
is the headline. A last run with that many clients (3 at least) mixes in clients that disconnect
half-way and one that sends only garbage; its well-behaved clients' missed chunks and the tick
times, beside those of the clean run of the same size, show whether the faults cost the others.
Turn messages carry the engine step's own time (`step_ms`): the rest of a tick is vocoding and
socket work.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import tempfile
import threading

import aiohttp
import numpy as np
from flax import nnx

from jax_interact import atomic, bench, models
from jax_interact.errors import InputError
from jax_interact.inference import session
from jax_interact.serving import server as server_lib
from jax_interact.streams.timing import SAMPLE_RATE
from jax_interact.streams.tokenizer import FILENAME, Tokenizer, train_tokenizer

PIECE_S = 0.04  # a client sends 40 ms of audio at a time, as the browser page does
WELL_BEHAVED, DISCONNECTING, GARBAGE = "well_behaved", "disconnecting", "garbage"


class _ServerThread:
  """A server on its own event loop in a daemon thread, listening on a free loopback port."""

  def __init__(self, server: server_lib.Server):
    self.server = server
    self._listening = threading.Event()
    self._failure: BaseException | None = None
    self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
    self._thread.start()
    self._listening.wait()
    if self._failure is not None:
      raise self._failure

  async def _main(self) -> None:
    self._loop = asyncio.get_running_loop()
    self._stop = asyncio.Event()
    try:
      runner, self.port = await server_lib.start(self.server, "127.0.0.1", 0)
    except Exception as e:  # noqa: BLE001 (raised again in the constructor's thread)
      self._failure = e
      self._listening.set()
      return
    self._listening.set()
    await self._stop.wait()
    await runner.cleanup()

  def close(self) -> None:
    self._loop.call_soon_threadsafe(self._stop.set)
    self._thread.join()


async def _client(url: str, behaviour: str, audio_int16: np.ndarray, seconds: float) -> dict:
  stats = {"behaviour": behaviour, "turns": 0, "missing": 0, "audio_bytes": 0, "errors": 0,
           "step_ms": []}

  async def receive(ws):
    async for message in ws:
      if message.type == aiohttp.WSMsgType.BINARY:
        stats["audio_bytes"] += len(message.data)
        continue
      payload = json.loads(message.data)
      if payload["type"] == "turn":
        stats["turns"] += 1
        stats["missing"] += payload["missing"]
        stats["step_ms"].append(payload["step_ms"])
      elif payload["type"] == "error":
        stats["errors"] += 1

  piece = round(PIECE_S * SAMPLE_RATE)
  pcm = np.resize(audio_int16, max(len(audio_int16), piece)).astype("<i2")
  garbage = np.random.default_rng(0)
  async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/session") as ws:
    await ws.receive_json()  # ready
    receiver = asyncio.create_task(receive(ws))
    loop = asyncio.get_running_loop()
    start = loop.time()
    duration = seconds / 2 if behaviour == DISCONNECTING else seconds
    sent = 0
    while loop.time() - start < duration:
      if behaviour == GARBAGE:
        await ws.send_bytes(garbage.bytes(641))  # odd length: not PCM16
        await ws.send_str("{not json")
      else:
        offsets = (np.arange(piece) + sent * piece) % len(pcm)
        await ws.send_bytes(pcm[offsets].tobytes())
      sent += 1
      await asyncio.sleep(max(0.0, start + sent * PIECE_S - loop.time()))
    await ws.close()
    await receiver
  return stats


def _run(served: server_lib.Served, behaviours: list[str], episodes: list[np.ndarray],
         seconds: float) -> dict:
  server = server_lib.Server(served, len(behaviours))
  thread = _ServerThread(server)
  try:
    server.tick_ms.clear()  # the compile run of start-up is not a tick
    url = f"http://127.0.0.1:{thread.port}"

    async def clients():
      return await asyncio.gather(*(
          _client(url, behaviour, episodes[i % len(episodes)], seconds)
          for i, behaviour in enumerate(behaviours)))

    stats = asyncio.run(clients())
    ticks = np.asarray(server.tick_ms)
  finally:
    thread.close()
  good = [s for s in stats if s["behaviour"] == WELL_BEHAVED]
  result = {
      "clients": len(behaviours), "ticks": int(ticks.size),
      "p50_tick_ms": float(np.percentile(ticks, 50)),
      "p99_tick_ms": float(np.percentile(ticks, 99)),
      "max_tick_ms": float(ticks.max()),
      "p50_step_ms": float(np.median([ms for s in good for ms in s["step_ms"]])),
      "well_behaved": len(good), "missed_chunks": sum(s["missing"] for s in good),
      "turns_min": min(s["turns"] for s in good), "turns_max": max(s["turns"] for s in good),
      "audio_ok": all(s["audio_bytes"] == 6400 * s["turns"] for s in stats),
  }
  result["held_real_time"] = result["p99_tick_ms"] <= 200 and result["missed_chunks"] == 0
  for behaviour in (DISCONNECTING, GARBAGE):
    faulty = [s for s in stats if s["behaviour"] == behaviour]
    if faulty:
      result[behaviour] = len(faulty)
      result[f"{behaviour}_turns"] = sum(s["turns"] for s in faulty)
      result[f"{behaviour}_errors"] = sum(s["errors"] for s in faulty)
  return result


def _episodes(data: str | None, tmp: pathlib.Path) -> tuple[list, Tokenizer]:
  """(user audio int16 of held-out episodes, tokenizer)."""
  if data:
    from data_pipelines import dataset
    source = dataset.open_split(data, "validation")
    episodes = [source[i] for i in range(min(len(source), 8))]
    return [e.user_audio for e in episodes], dataset.load_tokenizer(data)
  from data_pipelines import synthetic
  episodes = [synthetic.generate_episode(task, i, seed=1)
              for i, task in enumerate(("turn_taking", "interruption", "rep_count"))]
  train_tokenizer(synthetic.vocabulary(), tmp / FILENAME, vocab_size=512)
  return [e.user_audio for e in episodes], Tokenizer.load(tmp / FILENAME)


def counts_up_to(n: int) -> list[int]:
  counts = [1 << i for i in range(n.bit_length()) if 1 << i < n]
  return counts + [n]


def measure(config, clients: int, seconds: float, data: str | None) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    episodes, tokenizer = _episodes(data, pathlib.Path(tmp))
  model = models.build(config, nnx.Rngs(0))
  served = server_lib.Served(session.program(model, config), tokenizer, config, 0)
  runs = []
  for n in counts_up_to(clients):
    runs.append(run := _run(served, [WELL_BEHAVED] * n, episodes, seconds))
    print(f"{run['clients']:>3} clients: p50 tick {run['p50_tick_ms']:.1f} ms (engine step "
          f"{run['p50_step_ms']:.1f}), p99 {run['p99_tick_ms']:.1f} ms, missed "
          f"{run['missed_chunks']}", flush=True)
  held = max([r["clients"] for r in runs if r["held_real_time"]], default=0)
  total = max(held, 3)
  disconnecting = max(1, total // 4)
  faults = _run(served, [GARBAGE] + [DISCONNECTING] * disconnecting
                + [WELL_BEHAVED] * (total - 1 - disconnecting), episodes, seconds)
  clean = next((r for r in runs if r["clients"] == total), None)
  faults["clean_p99_tick_ms"] = clean["p99_tick_ms"] if clean else None
  faults["clean_missed_chunks"] = clean["missed_chunks"] if clean else None
  print(f"faults, {total} clients: p99 tick {faults['p99_tick_ms']:.1f} ms, well-behaved "
        f"clients missed {faults['missed_chunks']}", flush=True)
  return {"clients": clients, "seconds": seconds, "runs": runs, "faults": faults,
          "most_clients_real_time": held,
          "episode_audio_s": [round(len(e) / SAMPLE_RATE, 2) for e in episodes],
          "cpu_count": os.cpu_count()}


HEADLINE = ("most_clients_real_time", "clients", "p50_tick_ms", "p99_tick_ms", "missed_chunks",
            "faults_clients", "faults_p99_tick_ms", "faults_clean_p99_tick_ms",
            "faults_missed_chunks", "faults_garbage_errors")


def main(args) -> int:
  if args.clients <= 0 or args.seconds <= 0:
    raise InputError("--clients/--seconds", "expected positive numbers")
  config = bench.load_config(args)
  result = measure(config, args.clients, args.seconds, args.data)
  largest = result["runs"][-1]
  result.update({"benchmark": "serve", "config": config.name,
                 "p50_tick_ms": largest["p50_tick_ms"], "p99_tick_ms": largest["p99_tick_ms"],
                 "missed_chunks": largest["missed_chunks"],
                 **{f"faults_{key}": result["faults"][key] for key in (
                     "clients", "p99_tick_ms", "clean_p99_tick_ms", "missed_chunks",
                     "garbage_errors")}})
  result["headline"] = {key: float(f"{result[key]:.4g}") if isinstance(result[key], float)
                        else result[key] for key in HEADLINE}
  atomic.write_json(args.out, result)
  bench.print_headline(result)
  return 0
