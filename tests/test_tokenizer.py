from model.tokenizer import Tokenizer


def test_round_trip_and_eos(tiny_model_dir):
    tokenizer = Tokenizer(tiny_model_dir)
    text = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.eos_id == 1


def test_streaming_never_emits_half_a_character(tiny_model_dir):
    tokenizer = Tokenizer(tiny_model_dir)
    text = "x = 'héllo wörld ✓ 🐍 日本'\n"
    ids = tokenizer.encode(text)
    decoder = tokenizer.stream()
    pieces = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    # The snake is four UTF-8 bytes that the small vocabulary splits over several tokens.
    assert len([p for p in pieces if p]) < len(ids)
