"""The project's SentencePiece tokenizer: fixed special ids, never produced from plain text."""

import pytest

from jax_interact.errors import InputError
from jax_interact.streams import tokenizer as tok

CORPUS = ["hello there how are you doing today", "count the bounces of the red ball",
          "tell me when the square turns red", "seven eight nine ten", "stop start moving"] * 10


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tokenizer.model"
  tok.train_tokenizer(CORPUS, path, vocab_size=80)
  return path


def test_special_ids_are_fixed(model_path):
  t = tok.Tokenizer.load(model_path)
  assert (tok.PAD, tok.UNK, tok.BOS, tok.EOS, tok.SIL, tok.DELEGATE, tok.BG, tok.BG_END) == tuple(
      range(8))
  assert [t.piece(i) for i in range(8)] == list(tok.SPECIAL_PIECES)
  assert 8 < t.size <= 80


def test_plain_text_never_encodes_to_specials(model_path):
  t = tok.Tokenizer.load(model_path)
  text = "<pad> <unk> <bos> <eos> <sil> <delegate> <bg> </bg> hello red ball zebra"
  ids = t.encode(text)
  assert not set(ids) & (set(range(8)) - {tok.UNK})
  assert t.decode(t.encode("count the red ball")) == "count the red ball"


def test_decode_drops_empty_slots_and_can_show_specials(model_path):
  t = tok.Tokenizer.load(model_path)
  ids = [tok.SIL, tok.DELEGATE, *t.encode("red"), tok.PAD, tok.BG, *t.encode("ball"), tok.BG_END]
  assert t.decode(ids) == "red ball"
  assert t.decode(ids, show_specials=True) == "<delegate> red <bg> ball </bg>"
  assert t.decode([t.size + 5]) == t.decode([tok.UNK])  # ids past the vocabulary do not crash


def test_training_is_deterministic(model_path, tmp_path):
  tok.train_tokenizer(CORPUS, tmp_path / "again.model", vocab_size=80)
  assert (tmp_path / "again.model").read_bytes() == model_path.read_bytes()
  assert [p.name for p in tmp_path.iterdir()] == ["again.model"]


def test_load_errors_name_the_file(tmp_path):
  for path in (tmp_path / "absent.model", tmp_path / "junk.model"):
    if path.name == "junk.model":
      path.write_bytes(b"not a model")
    with pytest.raises(InputError, match=str(path)):
      tok.Tokenizer.load(path)
