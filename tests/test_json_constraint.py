"""The JSON-mode automaton against Python's json module, and its token masks against a brute
force check of every token."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pygemma.json_constraint import DONE, INITIAL, JsonConstraint, TokenBytes, feed_bytes

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                  st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_value = st.recursive(_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=10)
_object = st.dictionaries(st.text(max_size=5), _value, max_size=4)


def accepts(text):
    state = feed_bytes(INITIAL, text.encode("utf-8", "surrogatepass"))
    return state is not None and state[0] == DONE


@settings(max_examples=300, deadline=None)
@given(obj=_object, indent=st.sampled_from([None, 0, 2]), ascii_=st.booleans())
def test_accepts_every_serialized_object_and_each_prefix(obj, indent, ascii_):
    text = json.dumps(obj, indent=indent, ensure_ascii=ascii_)
    data = text.encode()
    assert accepts(text)
    state = INITIAL
    for i, byte in enumerate(data):
        state = feed_bytes(state, bytes([byte]))
        assert state is not None, data[:i + 1]
        assert (state[0] == DONE) == (i == len(data) - 1)


@settings(max_examples=500, deadline=None)
@given(text=st.text(alphabet='{}[]":,.-+eE0123456789 \ntruefalsn\\u\x01ab\u00e9', max_size=24))
def test_agrees_with_json_loads_on_random_text(text):
    try:
        ok = isinstance(json.loads(text, parse_constant=lambda c: 1 / 0), dict)
    except (ValueError, ZeroDivisionError):
        ok = False
    text = text.strip(" \n")                 # we allow no whitespace after the object
    assert accepts(text) == ok, text


@pytest.mark.parametrize("text", ['{"a": 01}', '{"a": 1.}', '{"a": .5}', '{"a": +1}', '{"a":"\\x"}',
                                  '{"a": "\\ud8"}', '{"a":1,}', '[1]', '"s"', '{"a" 1}', '{,}',
                                  '{"a":NaN}', '{"a": tru}', '{"\x01":1}'])
def test_rejects(text):
    assert not accepts(text)


def test_rejects_invalid_utf8_and_limits():
    assert feed_bytes(INITIAL, b'{"a": "\xc3') is not None          # a character in progress
    assert feed_bytes(INITIAL, b'{"a": "\xc3(') is None             # not a continuation byte
    assert feed_bytes(INITIAL, b'{"a": "\xe0\x80') is None          # overlong
    assert feed_bytes(INITIAL, b'{"a": "\xed\xa0') is None          # a surrogate
    assert feed_bytes(INITIAL, b"{" + b" " * 1000) is None           # endless whitespace
    assert feed_bytes(INITIAL, b'{"a":' + b"[" * 1000) is None       # endless nesting


_pieces = st.lists(st.binary(min_size=0, max_size=4).map(bytes) | st.sampled_from(
    [b'{', b'}', b'"', b'":', b'",', b' "', b'\n', b'  ', b'1', b'.5', b'true', b'\\', b'\\n', b'\xc3', b'\xa9',
     b'abc', b' the', b'e', b'-', b'[]', b'null}', b'"}']), min_size=5, max_size=60, unique=True)


@settings(max_examples=60, deadline=None)
@given(pieces=_pieces, obj=_object, cut=st.floats(0, 1))
def test_mask_equals_brute_force(pieces, obj, cut):
    tb = TokenBytes(pieces)
    text = json.dumps(obj).encode()
    state = feed_bytes(INITIAL, text[:int(len(text) * cut)])
    c = JsonConstraint(tb)
    c.state = state
    expected = np.array([bool(p) and feed_bytes(state, p) is not None for p in tb.pieces])
    assert np.array_equal(tb.allowed_from(state), expected)
    assert [c.allowed(i) for i in range(len(pieces))] == list(expected)
    logits = np.zeros(len(pieces), dtype=np.float32)
    c.mask(logits)
    assert np.array_equal(np.isfinite(logits), expected)
