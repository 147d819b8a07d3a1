// AudioWorklet: the microphone at the context's rate -> 16 kHz PCM 16-bit, posted in 40 ms pieces.
// Each output sample is the mean of the input over its own 1/16000 s span (a box low-pass, then
// decimation), taken at fractional positions so any input rate works.
class Mic16k extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.targetRate = options.processorOptions.targetRate;
    this.step = sampleRate / this.targetRate;  // input samples per output sample
    this.piece = new Int16Array(this.targetRate / 25);
    this.filled = 0;
    this.position = 0;  // input position (in samples) where the next output sample starts
    this.sum = 0;
    this.weight = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    for (let i = 0; i < channel.length; i++) {
      // Input sample i of this block covers [i, i + 1) in block time; `position` is relative
      // to the block start.
      let start = i;
      while (start < i + 1) {
        const end = Math.min(i + 1, this.position + this.step);
        this.sum += channel[i] * (end - start);
        this.weight += end - start;
        start = end;
        if (end >= this.position + this.step) {
          this.emit(this.sum / this.weight);
          this.sum = 0;
          this.weight = 0;
          this.position += this.step;
        }
      }
    }
    this.position -= channel.length;
    return true;
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.piece[this.filled++] = Math.round(clipped * 32767);
    if (this.filled === this.piece.length) {
      this.port.postMessage(this.piece.buffer.slice(0));
      this.filled = 0;
    }
  }
}

registerProcessor("mic-16k", Mic16k);
