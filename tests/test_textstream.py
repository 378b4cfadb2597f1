"""The stop-string / UTF-8 streaming filter (csrc/textstream.c), against Python's own UTF-8
decoder and a naive byte-by-byte stop-string search."""
import codecs
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pygemma.errors import ModelStateError
from pygemma.sampling import MAX_STOP_BYTES, MAX_STOPS, TextStream


def run(stops, pieces):
    """Feed pieces; return (chunks, flushed, stream)."""
    ts = TextStream(stops)
    chunks = [ts.feed(p) for p in pieces]
    return chunks, ts.flush(), ts


def oracle(stops, data):
    """(text shown, stop index or None): the stream is cut at the first byte that completes
    a stop string (the longest one if several complete there), then decoded as Python does."""
    enc = [s.encode() if isinstance(s, str) else s for s in stops]
    for end in range(1, len(data) + 1):
        hits = [i for i, s in enumerate(enc) if data[:end].endswith(s)]
        if hits:
            i = max(hits, key=lambda j: len(enc[j]))
            return data[:end - len(enc[i])].decode("utf-8", "replace"), i
    return data.decode("utf-8", "replace"), None


def splits(data, max_cuts=None):
    """Every way to cut `data` into pieces (or those with at most max_cuts cuts)."""
    n = len(data)
    cuts_range = range(n) if max_cuts is None else range(min(n, max_cuts + 1))
    for k in cuts_range:
        for cuts in itertools.combinations(range(1, n), k):
            bounds = (0,) + cuts + (n,)
            yield [data[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("text", ["😀", "a€b", "中文é", "é😀x", "\U0010FFFF\u0800"])
def test_multibyte_characters_split_every_way(text):
    data = text.encode()
    for pieces in splits(data):
        chunks, flushed, ts = run((), pieces)
        assert "".join(chunks) == text and flushed == ""   # each chunk decoded strictly
        assert ts.held == 0


def test_longer_text_split_at_up_to_two_points():
    text = "Grüße, 世界! 🎉🎉 naïve café — ok"
    data = text.encode()
    for pieces in splits(data, max_cuts=2):
        chunks, flushed, _ = run((), pieces)
        assert "".join(chunks) + flushed == text


def test_characters_are_released_as_soon_as_complete():
    ts = TextStream()
    data = "x€".encode()                                   # 78 E2 82 AC
    assert ts.feed(data[:2]) == "x" and ts.held == 1
    assert ts.feed(data[2:3]) == "" and ts.held == 2
    assert ts.feed(data[3:]) == "€" and ts.held == 0


def test_stop_string_spanning_pieces():
    ts = TextStream(["<end>"])
    assert ts.feed(b"hello <e") == "hello "
    assert ts.held == 2 and not ts.stopped
    assert ts.feed(b"nd> more") == ""
    assert ts.stopped and ts.stop == "<end>"
    assert ts.feed(b"anything") == "" and ts.flush() == ""


def test_stop_string_at_the_very_start():
    ts = TextStream(["STOP"])
    assert ts.feed(b"STOP and the rest") == ""
    assert ts.stopped


def test_overlapping_prefixes():
    assert run(["ab"], [b"a", b"a", b"b"])[0] == ["", "a", ""]
    assert run(["ab"], [b"aab"])[0] == ["a"]
    chunks, _, ts = run(["abab"], [bytes([c]) for c in b"abaababX"])
    assert "".join(chunks) == "aba" and ts.stopped


def test_no_stop_everything_comes_out():
    chunks, flushed, ts = run(["zzz"], [b"hello ", b"wor", b"ld z", b"z"])
    assert "".join(chunks) == "hello world " and flushed == "zz" and not ts.stopped


def test_flush_turns_partial_utf8_into_replacement():
    ts = TextStream()
    assert ts.feed(b"abc\xe2\x82") == "abc"
    assert ts.flush() == "\ufffd"
    with pytest.raises(ModelStateError, match="flush"):
        ts.feed(b"x")
    ts.reset()
    assert ts.feed(b"x") == "x"


def test_invalid_bytes_become_replacements_like_python():
    for data in [b"a\xffb", b"\x80\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80x", b"\xf4\x90\x80\x80",
                 b"\xc0\xaf", b"\xf0\x9f\x98", b"\xe2\x28\xa1"]:
        chunks, flushed, _ = run((), [data])
        assert "".join(chunks) + flushed == data.decode("utf-8", "replace"), data


def test_multibyte_stop_strings():
    text = "答案是42。结束了吗".encode()
    for pieces in splits(text, max_cuts=2):
        chunks, flushed, ts = run(["结束"], pieces)
        assert "".join(chunks) == "答案是42。" and ts.stopped and flushed == ""


def test_simultaneous_and_nested_stops():
    # both complete on the same byte: the longer one (which started earlier) decides
    chunks, _, ts = run(["bc", "abc"], [b"xabc"])
    assert chunks == ["x"] and ts.stop == "abc"
    # "bc" completes before "abcd" could: the stream stops there, however it is split
    for pieces in ([b"abcd"], [b"a", b"bcd"], [b"ab", b"c", b"d"]):
        chunks, _, ts = run(["abcd", "bc"], pieces)
        assert "".join(chunks) == "a" and ts.stop == "bc"


def test_limits_and_bad_stops():
    TextStream(["x"] * MAX_STOPS)
    with pytest.raises(ValueError, match="at most"):
        TextStream(["x"] * (MAX_STOPS + 1))
    TextStream(["y" * MAX_STOP_BYTES])
    with pytest.raises(ValueError, match="bytes"):
        TextStream(["y" * (MAX_STOP_BYTES + 1)])
    with pytest.raises(ValueError, match="empty"):
        TextStream(["ok", ""])


# ---- property test ----

FRAGMENTS = [b"a", b"b", b"c", b" ", b"\n", "é".encode(), "€".encode(), "😀".encode(),
             "中".encode(), b"\xff", b"\x80", b"\xe2\x82", b"\xf0\x9f"]
STOP_ALPHABET = ["a", "b", "c", "\n", "é", "😀"]


@settings(max_examples=300, deadline=None)
@given(
    stops=st.lists(st.lists(st.sampled_from(STOP_ALPHABET), min_size=1, max_size=4).map("".join),
                   max_size=3),
    frags=st.lists(st.sampled_from(FRAGMENTS), max_size=30),
    cuts=st.lists(st.integers(0, 200), max_size=12),
)
def test_output_equals_input_up_to_the_first_stop(stops, frags, cuts):
    data = b"".join(frags)
    bounds = sorted({0, len(data)} | {c for c in cuts if c < len(data)})
    pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
    want, want_stop = oracle(stops, data)
    ts = TextStream(stops)
    shown, fed = [], 0
    enc = [s.encode() for s in stops]
    for p in pieces:
        shown.append(ts.feed(p))
        fed += len(p)
        if ts.stopped:
            break
        # what is shown is exactly the decoded prefix, and only what must wait is held:
        # the longest tail that begins a stop string, plus an unfinished character before it
        text_so_far = data[:fed]
        tail = max([k for s in enc for k in range(1, len(s)) if text_so_far.endswith(s[:k])],
                   default=0)
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        dec.decode(text_so_far[:fed - tail], final=False)
        assert ts.held == tail + len(dec.getstate()[0])
        assert "".join(shown) == text_so_far[:fed - ts.held].decode("utf-8", "replace")
    shown.append(ts.flush())
    assert "".join(shown) == want
    assert ts.stop == (None if want_stop is None else stops[want_stop])
