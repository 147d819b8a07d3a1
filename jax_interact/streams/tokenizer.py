"""The text tokenizer: a SentencePiece model the project trains on its own corpus.

Special tokens have fixed ids in every trained model. They are SentencePiece *control* symbols,
so encoding plain text never produces them (the text "<sil>" encodes as ordinary pieces).
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Iterable, Sequence

import sentencepiece as spm

from jax_interact import atomic
from jax_interact.errors import InputError

FILENAME = "tokenizer.model"  # its name in a dataset dir and in a training workdir
PAD, UNK, BOS, EOS, SIL, DELEGATE, BG, BG_END = range(8)
SPECIAL_PIECES = ("<pad>", "<unk>", "<bos>", "<eos>", "<sil>", "<delegate>", "<bg>", "</bg>")
# Specials meaning "nothing here": left out of decoded text even when specials are shown.
EMPTY_IDS = frozenset({PAD, SIL})


def train_tokenizer(sentences: Iterable[str], out_path: str | os.PathLike,
                    vocab_size: int) -> None:
  """Trains a SentencePiece BPE model on `sentences` and writes it to `out_path` atomically.

  Deterministic (one thread, input order kept). `vocab_size` is an upper bound: a small corpus
  may give fewer pieces. BPE rather than unigram: on the small synthetic corpus unigram stops
  near single characters, BPE keeps merging frequent words into single pieces.
  """
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(list(sentences)), model_writer=model, vocab_size=vocab_size,
      model_type="bpe", hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
      shuffle_input_sentence=False, minloglevel=2,
      pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
      pad_piece="<pad>", unk_piece="<unk>", bos_piece="<bos>", eos_piece="<eos>",
      control_symbols=list(SPECIAL_PIECES[SIL:]))
  out_path = pathlib.Path(out_path)
  atomic.write_bytes(out_path, model.getvalue())


class Tokenizer:
  """Text <-> token ids with the project's fixed special ids."""

  def __init__(self, processor: spm.SentencePieceProcessor):
    self._sp = processor
    pieces = tuple(processor.id_to_piece(i) for i in range(len(SPECIAL_PIECES)))
    if pieces != SPECIAL_PIECES:
      raise ValueError(f"special pieces {pieces}, expected {SPECIAL_PIECES}")

  @classmethod
  def load(cls, path: str | os.PathLike) -> Tokenizer:
    where = str(path)
    if not pathlib.Path(path).is_file():
      raise InputError(where, "tokenizer model not found")
    processor = spm.SentencePieceProcessor()
    try:
      processor.load(where)
      return cls(processor)
    except (RuntimeError, OSError, ValueError) as e:
      raise InputError(where, f"not a jax_interact SentencePiece model: {e}") from None

  @property
  def size(self) -> int:
    return self._sp.get_piece_size()

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def decode(self, ids: Sequence[int], show_specials: bool = False) -> str:
    """Text of `ids`. `<pad>`/`<sil>` are always dropped; other specials only when hidden."""
    parts, run = [], []
    for i in (int(i) for i in ids):
      if not 0 <= i < self.size:  # e.g. a model whose vocab_size exceeds the tokenizer's
        i = UNK
      if i in EMPTY_IDS:
        continue
      if i < len(SPECIAL_PIECES) and i != UNK:
        if show_specials:
          parts += [self._sp.decode(run), SPECIAL_PIECES[i]]
          run = []
        continue
      run.append(i)
    parts.append(self._sp.decode(run))
    return " ".join(p for p in parts if p)

  def model_bytes(self) -> bytes:
    """The serialized SentencePiece model (what `load` reads)."""
    return self._sp.serialized_model_proto()

  def piece(self, token_id: int) -> str:
    return self._sp.id_to_piece(int(token_id))
