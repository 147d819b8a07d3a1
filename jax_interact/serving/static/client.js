// The browser client of `jax-interact serve` (protocol: jax_interact/serving/server.py).
// Streams the microphone (resampled to 16 kHz in mic-worklet.js), plays the model's audio as it
// arrives, and shows both transcripts and a scrolling who-spoke-when timeline. `window.jaxInteract`
// holds the counters shown under the timeline (tests read them).
"use strict";

const SAMPLE_RATE = 16000;
const TIMELINE_TURNS = 150;  // 30 s of micro-turns on the canvas
const SPEAKING_RMS = 0.02;  // a 200 ms stretch louder than this counts as speech on the timeline

const stats = window.jaxInteract = {
  state: "idle", session: null, turns: 0, missing: 0, audioMessages: 0, audioSamples: 0,
  sentSamples: 0, errors: [],
};
const $ = (id) => document.getElementById(id);
let ctx = null, ws = null, mic = null, worklet = null, playhead = 0;
let pendingTurn = null, heardEnergy = 0, heardSamples = 0;
const timeline = [];  // {user, model, text} per micro-turn

function setState(state, detail) {
  stats.state = state;
  $("status").dataset.state = state;
  $("status").textContent = detail ? `${state}: ${detail}` : state;
  $("start").disabled = state === "live" || state === "connecting";
  $("stop").disabled = !$("start").disabled;
}

function rms(samples) {
  let sum = 0;
  for (const x of samples) sum += x * x;
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

function appendWords(id, text) {
  if (!text) return;
  const lane = $(id);
  lane.textContent += (lane.textContent ? " " : "") + text;
  lane.parentElement.scrollTop = lane.parentElement.scrollHeight;
}

function play(pcm) {
  const floats = Float32Array.from(pcm, (x) => x / 32768);
  const buffer = ctx.createBuffer(1, floats.length, SAMPLE_RATE);
  buffer.copyToChannel(floats, 0);
  const source = ctx.createBufferSource();
  source.buffer = buffer;
  source.connect(ctx.destination);
  playhead = Math.max(playhead, ctx.currentTime + 0.05);
  source.start(playhead);
  playhead += floats.length / SAMPLE_RATE;
  return rms(floats);
}

function drawTimeline() {
  const canvas = $("timeline"), g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, lane = h / 2 - 10;
  const column = w / TIMELINE_TURNS;
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui";
  g.fillStyle = "#999";
  g.fillText("you", 4, 12);
  g.fillText("model", 4, h / 2 + 12);
  const shown = timeline.slice(-TIMELINE_TURNS);
  shown.forEach((turn, i) => {
    const x = w - (shown.length - i) * column;
    if (turn.user) { g.fillStyle = "#4a8ad4"; g.fillRect(x, 16, column - 1, lane - 8); }
    if (turn.missing) { g.fillStyle = "#e88"; g.fillRect(x, 8, column - 1, 4); }
    if (turn.model) { g.fillStyle = "#e08a2c"; g.fillRect(x, h / 2 + 16, column - 1, lane - 8); }
    if (turn.text) { g.fillStyle = "#222"; g.fillText(turn.text, x, h - 4); }
  });
}

function showStats() {
  $("stats").textContent = `session ${stats.session || "-"} · ${stats.turns} micro-turns · ` +
    `${stats.missing} without your audio · ${(stats.audioSamples / SAMPLE_RATE).toFixed(1)} s ` +
    `of model audio · ${(stats.sentSamples / SAMPLE_RATE).toFixed(1)} s of your audio sent`;
}

function onMessage(event) {
  if (typeof event.data !== "string") {  // the audio of the turn announced just before
    const pcm = new Int16Array(event.data);
    stats.audioMessages += 1;
    stats.audioSamples += pcm.length;
    const loud = play(pcm) > SPEAKING_RMS;
    if (pendingTurn) {
      timeline.push({...pendingTurn, model: loud});
      pendingTurn = null;
      drawTimeline();
    }
    showStats();
    return;
  }
  const message = JSON.parse(event.data);
  if (message.type === "ready") {
    stats.session = message.session;
    setState("live", `session ${message.session}`);
  } else if (message.type === "turn") {
    stats.turns += 1;
    if (message.missing) stats.missing += 1;
    appendWords("transcript", message.transcript);
    appendWords("said", message.text);
    if (message.bg) appendWords("said", `[background: ${message.bg}]`);
    const heard = heardSamples ? Math.sqrt(heardEnergy / heardSamples) : 0;
    heardEnergy = heardSamples = 0;
    pendingTurn = {user: heard > SPEAKING_RMS || !!message.transcript, missing: message.missing,
                   text: message.text};
  } else if (message.type === "error") {
    stats.errors.push(message.message);
    $("log").textContent = message.message;
  }
}

async function start() {
  setState("connecting");
  try {
    ctx = new AudioContext();
    await ctx.resume();
    await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    mic = await navigator.mediaDevices.getUserMedia(
      {audio: {channelCount: 1, echoCancellation: true, noiseSuppression: false,
               autoGainControl: false}});
  } catch (error) {
    setState("error", `microphone: ${error.message}`);
    return;
  }
  const source = ctx.createMediaStreamSource(mic);
  worklet = new AudioWorkletNode(ctx, "mic-16k", {processorOptions: {targetRate: SAMPLE_RATE}});
  const mute = ctx.createGain();
  mute.gain.value = 0;  // the worklet is pulled by the graph, but the microphone is not echoed
  source.connect(worklet).connect(mute).connect(ctx.destination);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(`${scheme}://${location.host}/session`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = onMessage;
  ws.onclose = (event) => setState(event.code === 1000 ? "closed" : "error",
                                   `connection closed (${event.code}) ${event.reason}`);
  worklet.port.onmessage = (event) => {
    if (!ws || ws.readyState !== WebSocket.OPEN || !stats.session) return;
    const pcm = new Int16Array(event.data);
    for (const x of pcm) heardEnergy += (x / 32768) ** 2;
    heardSamples += pcm.length;
    stats.sentSamples += pcm.length;
    ws.send(event.data);
  };
}

function stop() {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "end"}));
  if (mic) mic.getTracks().forEach((track) => track.stop());
  if (worklet) worklet.port.onmessage = null;
}

$("start").onclick = start;
$("stop").onclick = stop;
setState("idle");
drawTimeline();
