"""`jax-interact serve`: live sessions over WebSocket (SPEC §10), on aiohttp.

One engine with `max_sessions` rows steps every connected session once per 200 ms tick; a
session takes a row when it connects and frees it when it leaves (no recompiles). The step runs
in one worker thread, so the event loop keeps reading and writing sockets while it runs; every
change to the engine (add, evict, step) goes through that thread, in order.

HTTP: `GET /` the browser client (static/), `GET /health` JSON {sessions, max_sessions,
p99_tick_ms, ticks, checkpoint_step}, WebSocket `/session` one session:
  client -> server  binary: user audio, PCM 16-bit little-endian mono 16 kHz, any length (the
                    server re-chunks it on the 200 ms grid); text: JSON {"type": "text", "text"}
                    typed text, {"type": "video", "jpeg": base64} a frame (it stays the session's
                    frame until the next), {"type": "end"} no more input: the session runs until
                    the audio it holds is used up, then the server closes it (1000).
  server -> client  {"type": "ready", "chunk_ms", "sample_rate", "session"}; then per micro-turn
                    {"type": "turn", "t", "text", "transcript", "missing", "step_ms", "delegated",
                    "bg"} followed by one binary message, the model's 200 ms of audio (PCM 16-bit
                    mono 16 kHz, chunk_samples samples); {"type": "error", "message"} for a
                    malformed message (the session goes on), a full server (then close 1013) or
                    a shutdown (then close 1001).
A micro-turn whose 200 ms of audio has not arrived by its tick runs without audio (typed text
and the frame still enter) and says `"missing": true`; audio more than AHEAD_S seconds ahead is
refused with an error. A client that stops reading is dropped
once `OUTBOX_TURNS` turns wait for it, so it never holds up the tick of the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import dataclasses
import io
import itertools
import json
import pathlib
import signal
import time
from typing import Any

import aiohttp
import jax
import jax.numpy as jnp
import numpy as np
from aiohttp import web
from PIL import Image

from jax_interact import vocoder
from jax_interact.errors import InputError
from jax_interact.inference import engine as engine_lib
from jax_interact.streams import dmel
from jax_interact.streams.audio import INT16_SCALE
from jax_interact.streams.layout import SlotKind
from jax_interact.streams.tokenizer import Tokenizer

STATIC = pathlib.Path(__file__).parent / "static"
OUTBOX_TURNS = 25  # 5 s of turns waiting for a client that does not read
AHEAD_S = 60  # audio a client may send ahead of its session's clock
TICK_HISTORY = 1000  # ticks behind p99_tick_ms
FULL, GOING_AWAY = 1013, 1001


@dataclasses.dataclass
class Served:
  """What a server runs: an engine program with its tokenizer and run config."""

  program: engine_lib.Program
  tokenizer: Tokenizer
  config: Any  # the run's config: `stream` and `background` sections are read
  checkpoint_step: int


def open_bundle(directory: str) -> Served:
  from jax_interact.serving import bundle
  loaded = bundle.load(directory)
  return Served(loaded.program, loaded.tokenizer, loaded.config, loaded.checkpoint_step)


def open_workdir(workdir: str, checkpoint: str, overrides) -> Served:
  from jax_interact.inference import session, trained
  run = trained.load(workdir, checkpoint, overrides)
  if run.config.model.kind != "interaction":
    raise InputError(f"{workdir}/config.json", f"model.kind is {run.config.model.kind!r}, "
                     "expected an interaction model (serve a background LM with --background)")
  return Served(session.program(run.model, run.config), run.tokenizer, run.config, run.step)


class _Session:
  """One connected client: its buffered input and the queue of messages to send it."""

  def __init__(self, session_id: str, ws: web.WebSocketResponse | None):
    self.id = session_id
    self.ws = ws
    self.row: int | None = None  # engine row, taken (in the engine thread) at its first tick
    self.ready_at = float("inf")  # loop time of "ready": its first micro-turn comes a tick later
    self.audio = bytearray()  # PCM16 not yet stepped
    self.text_ids: list[int] = []
    self.frame: np.ndarray | None = None
    self.ended = False
    self.closing = False  # the server is closing it: no more micro-turns
    self.outbox: asyncio.Queue = asyncio.Queue(maxsize=2 * OUTBOX_TURNS)

  def send(self, message: dict | bytes) -> bool:
    """Queues a message; False when the client is OUTBOX_TURNS turns behind."""
    try:
      self.outbox.put_nowait(message)
      return True
    except asyncio.QueueFull:
      return False

  def take_chunk(self, chunk_samples: int) -> tuple[engine_lib.Chunk, bool]:
    """(this micro-turn's input, audio missing?). After "end" the last audio is zero-padded."""
    size = 2 * chunk_samples
    audio = None
    if len(self.audio) >= size or (self.ended and self.audio):
      pcm = bytes(self.audio[:size]).ljust(size, b"\0")
      del self.audio[:size]
      audio = np.frombuffer(pcm, "<i2").astype(np.float32) / INT16_SCALE
    chunk = engine_lib.Chunk(audio=audio, frame=self.frame, text_ids=tuple(self.text_ids))
    self.text_ids = []
    return chunk, audio is None

  @property
  def finished(self) -> bool:
    return self.ended and not self.audio


class Server:
  """`Server(served, max_sessions, background=None)`; `app` is the aiohttp application."""

  def __init__(self, served: Served, max_sessions: int, background: str | None = None,
               seed: int = 0):
    program, self.tokenizer = served.program, served.tokenizer
    if max_sessions <= 0 or (program.batch_size and max_sessions > program.batch_size):
      raise InputError("--max-sessions", f"got {max_sessions}, expected 1.."
                       f"{program.batch_size or 'any'} (the bundle's batch; export with --batch)")
    self.served = served
    self.max_sessions = max_sessions
    self.layout = program.layout
    self.engine = engine_lib.Engine(program, program.batch_size or max_sessions, seed)
    self.runner: Any = self.engine
    if background:
      from jax_interact.background import orchestrator
      worker = orchestrator.open_worker(background, self.tokenizer, served.config.background)
      self.runner = orchestrator.Orchestrator(self.engine, worker, self.tokenizer,
                                              timeout_s=served.config.background.timeout_s)
    self.voice = _Voice(program.dmel_spec, self.engine.batch_size)
    self.sessions: dict[str, _Session] = {}
    self.tick_ms: collections.deque = collections.deque(maxlen=TICK_HISTORY)
    self.ticks = 0
    self._ids = itertools.count(1)
    self._events_seen: dict[int, int] = {}
    self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine")
    self._joined = asyncio.Event()
    self._ticker: asyncio.Task | None = None
    self.app = web.Application()
    self.app.add_routes([web.get("/", self._index), web.get("/health", self._health),
                         web.get("/session", self._session),
                         web.static("/static", STATIC)])
    self.app.on_startup.append(self._start)
    self.app.on_shutdown.append(self._shutdown)
    self.app.on_cleanup.append(self._cleanup)

  # HTTP ------------------------------------------------------------------------------------

  async def _index(self, request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")

  async def _health(self, request: web.Request) -> web.Response:
    p99 = float(np.percentile(self.tick_ms, 99)) if self.tick_ms else None
    return web.json_response({"sessions": len(self.sessions), "max_sessions": self.max_sessions,
                              "p99_tick_ms": p99, "ticks": self.ticks,
                              "checkpoint_step": self.served.checkpoint_step})

  # Sessions --------------------------------------------------------------------------------

  async def _session(self, request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=8 * 1024 * 1024)
    await ws.prepare(request)
    if len(self.sessions) >= self.max_sessions:
      await ws.send_json({"type": "error",
                          "message": f"server full ({self.max_sessions} sessions); try later"})
      await ws.close(code=FULL, message=b"server full")
      return ws
    session = _Session(f"s{next(self._ids)}", ws)
    self.sessions[session.id] = session
    loop = asyncio.get_running_loop()
    writer = asyncio.create_task(self._write(session))
    session.send({"type": "ready", "chunk_ms": self.layout.chunk_ms,
                  "sample_rate": self.layout.sample_rate, "session": session.id})
    session.ready_at = loop.time()
    self._joined.set()
    try:
      async for message in ws:
        if message.type == aiohttp.WSMsgType.BINARY:
          self._receive_audio(session, message.data)
        elif message.type == aiohttp.WSMsgType.TEXT:
          self._receive_text(session, message.data)
    finally:
      self.sessions.pop(session.id, None)
      writer.cancel()
      await loop.run_in_executor(self._executor, self._leave, session)
    return ws

  def _add(self, session_id: str) -> int:
    row = self.runner.add(session_id)
    self.voice.reset(row)
    self._events_seen[row] = 0
    return row

  def _leave(self, session: _Session) -> None:
    """Frees the session's row (engine thread: after any step that was adding it)."""
    if session.row is not None:
      self.runner.evict(session.row)
      session.row = None

  def _error(self, session: _Session, message: str) -> None:
    session.send({"type": "error", "message": message})

  def _receive_audio(self, session: _Session, data: bytes) -> None:
    if session.ended:
      self._error(session, "audio after {\"type\": \"end\"} is ignored")
    elif len(data) % 2:
      self._error(session, f"binary message of {len(data)} bytes: expected PCM 16-bit "
                  "little-endian samples (an even number of bytes)")
    elif len(session.audio) + len(data) > 2 * AHEAD_S * self.layout.sample_rate:
      self._error(session, f"audio more than {AHEAD_S} s ahead of the session is dropped: "
                  "send it at real-time pace")
    else:
      session.audio += data

  def _receive_text(self, session: _Session, data: str) -> None:
    try:
      message = json.loads(data)
    except json.JSONDecodeError:
      message = None
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "text" and isinstance(message.get("text"), str):
      session.text_ids += self.tokenizer.encode(message["text"])
    elif kind == "video" and isinstance(message.get("jpeg"), str):
      try:
        image = Image.open(io.BytesIO(base64.b64decode(message["jpeg"], validate=True)))
        session.frame = np.asarray(image.convert("RGB"), np.uint8)
      except (binascii.Error, OSError, ValueError, Image.DecompressionBombError) as e:
        self._error(session, f"video: \"jpeg\" is not a base64 JPEG image ({e})")
    elif kind == "end":
      session.ended = True
    else:
      self._error(session, f"text message {data[:80]!r}: expected JSON "
                  '{"type": "text", "text": str}, {"type": "video", "jpeg": base64} or '
                  '{"type": "end"}')

  async def _write(self, session: _Session) -> None:
    while True:
      message = await session.outbox.get()
      try:
        if isinstance(message, bytes):
          await session.ws.send_bytes(message)
        else:
          await session.ws.send_str(json.dumps(message))
      except (ConnectionError, RuntimeError):  # the client went away; its reader ends too
        return

  # Ticks -----------------------------------------------------------------------------------

  async def _start(self, app: web.Application) -> None:
    await asyncio.get_running_loop().run_in_executor(self._executor, self._compile)
    self._ticker = asyncio.create_task(self._tick_loop())

  def _compile(self) -> None:
    """Runs one micro-turn in a scratch row so that no session waits for compilation."""
    scratch = _Session("compile", None)
    self._step({scratch: None})
    self._leave(scratch)

  async def _tick_loop(self) -> None:
    loop = asyncio.get_running_loop()
    period = self.layout.chunk_ms / 1000
    next_start = loop.time()
    while True:
      if all(s.closing for s in self.sessions.values()):
        self._joined.clear()
        await self._joined.wait()
        next_start = loop.time() + period
      await asyncio.sleep(max(0.0, next_start - loop.time()))
      next_start = max(next_start + period, loop.time())
      await self._tick(loop)

  async def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
    start = time.perf_counter()
    # A session joins the tick once a real-time client can have sent its first 200 ms.
    joined = loop.time() - self.layout.chunk_ms / 1000
    live = [s for s in self.sessions.values() if s.ready_at <= joined and not s.closing]
    if not live:
      return
    inputs = {s: s.take_chunk(self.layout.chunk_samples) for s in live}
    results = await loop.run_in_executor(
        self._executor, self._step, {s: chunk for s, (chunk, _) in inputs.items()})
    for session in live:
      if session.id not in self.sessions:
        continue  # left during the step
      out, pcm, delegated, bg = results[session]
      turn = {"type": "turn", "t": out.turn, "text": self.tokenizer.decode(out.text_out),
              "transcript": self.tokenizer.decode(out.user_transcript),
              "missing": inputs[session][1], "step_ms": round(out.step_ms, 2),
              "delegated": delegated, "bg": bg}
      if not (session.send(turn) and session.send(pcm)):
        session.closing = True
        asyncio.create_task(session.ws.close(code=aiohttp.WSCloseCode.POLICY_VIOLATION,
                                             message=b"client does not read its turns"))
      elif session.finished:
        session.closing = True
        asyncio.create_task(self._finish(session))
    self.ticks += 1
    self.tick_ms.append((time.perf_counter() - start) * 1000)

  async def _finish(self, session: _Session) -> None:
    """Closes an ended session once its last turn has been sent."""
    while not session.outbox.empty():
      await asyncio.sleep(0.01)
    await session.ws.close()

  def _step(self, chunks: dict[_Session, engine_lib.Chunk | None]) -> dict[_Session, tuple]:
    """(TurnOutput, PCM16 bytes, delegated, background text) per session, whose row is taken
    at its first micro-turn: runs in the engine thread."""
    for session in chunks:
      if session.row is None:
        session.row = self._add(session.id)
    outputs = self.runner.step({session.row: chunk for session, chunk in chunks.items()})
    layout = self.layout
    audio_BAKM = np.zeros((self.engine.batch_size, layout.count(SlotKind.AUDIO_OUT),
                           layout.frames_per_token, layout.n_mels), np.uint8)
    for row, out in outputs.items():
      audio_BAKM[row] = out.audio_out
    pcm_BS = self.voice.step(audio_BAKM)
    results = {}
    for session in chunks:
      row = session.row
      delegated, bg = False, ""
      if self.runner is not self.engine:
        events = self.runner.events(row)
        new, self._events_seen[row] = events[self._events_seen[row]:], len(events)
        delegated = any(e["type"] == "delegate" for e in new)
        bg = " ".join(e["text"] for e in new if e["type"] == "result")
      results[session] = (outputs[row], pcm_BS[row].tobytes(), delegated, bg)
    return results

  # Shutdown --------------------------------------------------------------------------------

  async def _shutdown(self, app: web.Application) -> None:
    """Stops ticking and tells every session before the sockets close."""
    if self._ticker is not None:
      self._ticker.cancel()
    for session in list(self.sessions.values()):
      try:
        await session.ws.send_str(json.dumps({"type": "error",
                                              "message": "server shutting down"}))
        await session.ws.close(code=GOING_AWAY, message=b"server shutting down")
      except (ConnectionError, RuntimeError):
        pass

  async def _cleanup(self, app: web.Application) -> None:
    if self.runner is not self.engine:
      self.runner.close()
    self._executor.shutdown(wait=True)


class _Voice:
  """Streaming Griffin-Lim for every engine row at once: dMel bins -> PCM16 per micro-turn."""

  def __init__(self, spec: dmel.DMelSpec, rows: int):
    self.spec = spec
    self._fresh = vocoder.init_stream(spec)
    self.state = jax.tree.map(lambda x: jnp.broadcast_to(x, (rows, *x.shape)), self._fresh)
    self._vocode = jax.jit(jax.vmap(lambda state, mel: vocoder.vocode_chunk(state, mel, spec)))

  def reset(self, row: int) -> None:
    self.state = jax.tree.map(lambda s, x: s.at[row].set(x), self.state, self._fresh)

  def step(self, bins_BAKM: np.ndarray) -> np.ndarray:
    """int16 [B, chunk_samples] little-endian."""
    b = bins_BAKM.shape[0]
    log_mel_BFM = dmel.dequantize(bins_BAKM.reshape(b, -1, self.spec.n_mels), self.spec)
    self.state, samples_BS = self._vocode(self.state, jnp.asarray(log_mel_BFM))
    samples_BS = np.clip(np.asarray(samples_BS), -1.0, 1.0)
    return np.round(samples_BS * (INT16_SCALE - 1)).astype("<i2")


async def start(server: Server, host: str, port: int) -> tuple[web.AppRunner, int]:
  """Compiles, listens and starts ticking; returns the runner (`cleanup()` stops) and the port."""
  runner = web.AppRunner(server.app, handle_signals=False)
  await runner.setup()
  await web.TCPSite(runner, host, port).start()
  return runner, runner.addresses[0][1]


async def serve(server: Server, host: str, port: int) -> None:
  """Runs until SIGTERM or SIGINT, then shuts down gracefully (sessions told, sockets closed)."""
  runner, bound = await start(server, host, port)
  print(f"serving http://{host}:{bound}/ ({server.max_sessions} sessions, checkpoint step "
        f"{server.served.checkpoint_step}); Ctrl-C or SIGTERM stops", flush=True)
  stop = asyncio.Event()
  loop = asyncio.get_running_loop()
  for sig in (signal.SIGTERM, signal.SIGINT):
    loop.add_signal_handler(sig, stop.set)
  await stop.wait()
  print("shutting down", flush=True)
  await runner.cleanup()


def main(args) -> int:
  served = (open_bundle(args.bundle) if args.bundle
            else open_workdir(args.workdir, args.checkpoint, args.overrides))
  max_sessions = args.max_sessions or served.program.batch_size or 8
  server = Server(served, max_sessions, args.background)
  asyncio.run(serve(server, args.host, args.port))
  return 0
