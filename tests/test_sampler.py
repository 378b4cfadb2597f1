"""The sampler (csrc/sampler.c) and SamplingParams, against independent numpy oracles
(and llama.cpp's own samplers through llama-cpp-python, where installed)."""
import collections
import math

import numpy as np
import pytest

from pygemma import cpu
from pygemma._ffi import ffi, lib
from pygemma.sampling import (SEED_RANDOM, Sampler, SamplingParams, token_logprob,
                              top_logprobs)

# ---------------------------------------------------------------------------------------------
# numpy oracle of the chain: penalties -> top-k -> top-p -> min-p -> temperature
# ---------------------------------------------------------------------------------------------

# Float32 rounding in the C core may legitimately decide cases this close to a threshold
# either way; the oracle reports such tokens as "may keep" rather than "must keep".
EPS_LOGIT = 1e-5        # logit comparisons (top-k boundary, min-p threshold)
EPS_CUM = 1e-6          # cumulative probability against top_p


def penalize(logits, params, history):
    """float64 logits with llama.cpp's penalties applied for the window of `history`."""
    l = np.where(np.isnan(logits), -np.inf, logits.astype(np.float64))
    n = params.penalty_last_n
    if n == 0:
        return l
    window = history if n == -1 else history[-n:]
    for t, c in collections.Counter(window).items():
        v = l[t]
        v = v / params.repeat_penalty if v > 0 else v * params.repeat_penalty
        l[t] = v - (c * params.frequency_penalty + (c > 0) * params.presence_penalty)
    return l


def chain_oracle(logits, params, history=()):
    """The tokens the next draw must / may choose from: (must, may, penalized logits, l_max,
    skip).  skip is set when the top-k boundary itself is a near-tie (rare; then the test
    picks another case)."""
    l = penalize(logits, params, list(history))
    l = np.minimum(l, np.finfo(np.float32).max)          # +inf counts as FLT_MAX
    ok = np.flatnonzero(l > -np.inf)
    order = ok[np.lexsort((ok, -l[ok]))]               # best first, ties by lower id
    if params.temperature <= 0 or params.top_k == 1:
        best = {int(order[0])}
        return best, best, l, l[order[0]], len(order) > 1 and l[order[0]] - l[order[1]] < EPS_LOGIT
    k = len(order) if params.top_k <= 0 else min(params.top_k, len(order))
    skip = bool(k < len(order) and l[order[k - 1]] - l[order[k]] < EPS_LOGIT)
    order = order[:k]
    lmax = l[order[0]]
    must, may = order, order
    if params.top_p < 1 and len(order) > 1:
        w = np.exp(l[order] - lmax)
        cum = np.cumsum(w) / w.sum()

        def prefix_reaching(p):
            hit = np.flatnonzero(cum >= p)
            return int(hit[0]) + 1 if len(hit) else len(order)

        must = order[:prefix_reaching(params.top_p - EPS_CUM)]
        may = order[:prefix_reaching(params.top_p + EPS_CUM)]
    if params.min_p > 0 and len(may) > 1:
        thr = lmax + math.log(params.min_p)
        must = must[(l[must] >= thr + EPS_LOGIT) | (must == order[0])]
        may = may[l[may] >= thr - EPS_LOGIT]
    return set(must.tolist()), set(may.tolist()), l, lmax, skip


def oracle_probs(l, lmax, tokens, temperature):
    t = np.array(sorted(tokens))
    w = np.exp((l[t] - lmax) / temperature)
    return dict(zip(t.tolist(), (w / w.sum()).tolist()))


def assert_matches_oracle(sampler, logits, params, history=()):
    """Check sampler.candidates() against the oracle; False if the case had to be skipped."""
    must, may, l, lmax, skip = chain_oracle(logits, params, history)
    if skip:
        return False
    ids, probs = sampler.candidates(logits)
    got = set(ids.tolist())
    assert len(got) == len(ids)
    assert must <= got, sorted(must - got)[:10]
    assert got <= may, sorted(got - may)[:10]
    if params.temperature > 0 and params.top_k != 1:
        w = np.exp((l[ids] - lmax) / params.temperature)
        np.testing.assert_allclose(probs, w / w.sum(), rtol=2e-6, atol=1e-9)
    return True


def random_logits(rng, n, scale=3.0):
    return (rng.standard_normal(n) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# greedy, top-k = 1, reproducibility
# ---------------------------------------------------------------------------------------------


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    s = Sampler(SamplingParams.greedy(seed=1), 1000)
    for _ in range(50):
        l = random_logits(rng, 1000)
        assert s.sample(l) == int(np.argmax(l))


def test_greedy_ties_go_to_lowest_id():
    l = np.zeros(64, dtype=np.float32)
    l[[17, 5, 40]] = 3.0
    assert Sampler(SamplingParams.greedy(), 64).sample(l) == 5
    assert Sampler(SamplingParams(top_k=1, temperature=5.0), 64).sample(l) == 5


def test_tiny_temperature_is_the_greedy_limit():
    rng = np.random.default_rng(15)
    for t in (1e-30, 1e-40):                              # 1e-40 is subnormal: 1 / t overflows
        s = Sampler(SamplingParams(temperature=t, top_k=0, top_p=1.0, min_p=0.0), 5000)
        for _ in range(5):
            l = random_logits(rng, 5000)
            assert s.sample(l) == int(np.argmax(l))


@pytest.mark.parametrize("temperature", [0.1, 0.8, 1.0, 3.0, 100.0])
def test_top_k_1_equals_greedy_at_any_temperature(temperature):
    rng = np.random.default_rng(1)
    s = Sampler(SamplingParams(top_k=1, temperature=temperature, top_p=1.0, min_p=0.0), 5000)
    for _ in range(20):
        l = random_logits(rng, 5000)
        assert s.sample(l) == int(np.argmax(l))


def test_same_seed_same_sequence_and_reset_repeats_it():
    rng = np.random.default_rng(2)
    rows = [random_logits(rng, 300, 1.0) for _ in range(200)]
    p = SamplingParams(seed=1234, top_k=0, top_p=1.0, min_p=0.0, temperature=1.0)
    a, b = Sampler(p, 300), Sampler(p, 300)
    seq_a = [a.sample(r) for r in rows]
    assert seq_a == [b.sample(r) for r in rows]
    a.reset()
    assert seq_a == [a.sample(r) for r in rows]
    c = Sampler(p.replace(seed=1235), 300)
    seq_c = [c.sample(r) for r in rows]
    assert sum(x != y for x, y in zip(seq_a, seq_c)) > 100    # ~300 way draws: nearly all differ


def test_random_seed_is_picked_and_reported():
    p = SamplingParams(seed=None)
    a, b = Sampler(p, 10), Sampler(p, 10)
    assert a.seed != SEED_RANDOM and b.seed != SEED_RANDOM
    assert a.seed != b.seed
    # the reported seed reproduces the stream
    rng = np.random.default_rng(3)
    rows = [random_logits(rng, 10, 1.0) for _ in range(100)]
    c = Sampler(p.replace(seed=a.seed), 10)
    assert [a.sample(r) for r in rows] == [c.sample(r) for r in rows]


class Xoshiro:
    """Independent Python model of the RNG the C core promises: xoshiro256** seeded by
    splitmix64, uniform = (next >> 11) * 2^-53."""

    M = 2**64 - 1

    def __init__(self, seed):
        x = seed
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & self.M
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.M
            self.s.append(z ^ (z >> 31))

    @staticmethod
    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & Xoshiro.M

    def uniform(self):
        s = self.s
        result = (self.rotl((s[1] * 5) & self.M, 7) * 9) & self.M
        t = (s[1] << 17) & self.M
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = self.rotl(s[3], 45)
        return (result >> 11) * 2.0**-53


@pytest.mark.parametrize("seed", [0, 42, 2**63 + 12345])
@pytest.mark.parametrize("n_vocab", [50, 5000])
def test_draws_follow_the_documented_rng(seed, n_vocab):
    """Pins the random stream, so a seed gives the same tokens on every platform: draw i picks
    the first candidate (in the order candidates() reports) whose cumulative weight exceeds
    u_i * total, u_i from xoshiro256** seeded by splitmix64."""
    rng = np.random.default_rng(4)
    params = SamplingParams(seed=seed, temperature=0.9, top_k=0, top_p=1.0, min_p=0.0)
    s = Sampler(params, n_vocab)
    ref = Xoshiro(seed)
    checked = 0
    for _ in range(100):
        l = random_logits(rng, n_vocab, 1.5)
        ids, _ = s.candidates(l)                          # draws nothing
        assert sorted(ids.tolist()) == list(range(n_vocab))
        w = np.exp((l[ids].astype(np.float64) - l.max()) / 0.9)
        cum = np.cumsum(w)
        target = ref.uniform() * cum[-1]
        want = int(ids[np.argmax(cum > target)])
        got = s.sample(l)
        if np.min(np.abs(cum - target)) < 1e-6 * cum[-1]:
            continue                                      # float32 weights may decide either way
        assert got == want
        checked += 1
    assert checked > 85


# ---------------------------------------------------------------------------------------------
# distributions and candidate sets
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_empirical_distribution_matches_softmax(temperature):
    l = np.array([1.0, 0.5, 2.0, -1.0, 0.0, 1.5, -0.5, 0.25], dtype=np.float32)
    s = Sampler(SamplingParams(seed=7, temperature=temperature, top_k=0, top_p=1.0, min_p=0.0), len(l))
    n = 20000
    counts = np.bincount([s.sample(l) for _ in range(n)], minlength=len(l))
    p = np.exp(l / temperature - np.max(l / temperature))
    p /= p.sum()
    freq = counts / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sigma + 1e-9), (freq, p)
    chi2 = np.sum((counts - n * p) ** 2 / (n * p))
    assert chi2 < 24.32                                   # df = 7, p = 0.001


def test_draws_stay_in_the_candidate_set_with_its_frequencies():
    rng = np.random.default_rng(5)
    l = random_logits(rng, 200, 1.0)
    params = SamplingParams(seed=9, temperature=0.7, top_k=20, top_p=0.8, min_p=0.1)
    s = Sampler(params, 200)
    must, may, pl, lmax, skip = chain_oracle(l, params)
    assert must == may and not skip
    want = oracle_probs(pl, lmax, must, params.temperature)
    n = 20000
    counts = collections.Counter(s.sample(l) for _ in range(n))
    assert set(counts) <= set(want)
    for t, p in want.items():
        assert abs(counts[t] / n - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-9


CHAIN_CASES = [
    dict(),                                               # llama.cpp defaults
    dict(top_k=0),
    dict(top_k=0, min_p=0.0),
    dict(top_k=0, top_p=1.0),
    dict(top_k=0, top_p=1.0, min_p=0.0),
    dict(top_k=5, top_p=1.0, min_p=0.0),
    dict(top_k=5000, top_p=0.9, min_p=0.0),               # large k: the quickselect path
    dict(top_k=200, top_p=0.5, min_p=0.0, temperature=1.5),
    dict(top_k=0, top_p=0.3, min_p=0.0, temperature=0.3),
    dict(top_k=100, top_p=1.0, min_p=0.2),
    dict(top_k=0, top_p=0.0),                             # top-p keeps exactly one
    dict(top_k=0, min_p=1.0, top_p=1.0),                  # only the max survives
]


@pytest.mark.parametrize("n_vocab,scale", [(64, 1.0), (3000, 2.0), (262144, 3.0), (262144, 0.5)])
@pytest.mark.parametrize("case", CHAIN_CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_candidate_set_matches_numpy(case, n_vocab, scale, tier):
    rng = np.random.default_rng(n_vocab + len(case))
    params = SamplingParams(seed=3, **case)
    s = Sampler(params, n_vocab)
    tested = sum(assert_matches_oracle(s, random_logits(rng, n_vocab, scale), params) for _ in range(3))
    assert tested >= 1


def test_flat_and_tied_logits():
    """Everything in one bucket (all equal) and many exact ties: ties resolve by id."""
    n = 20000
    for params in (SamplingParams(top_k=0, top_p=0.5, min_p=0.0),
                   SamplingParams(top_k=100, top_p=1.0, min_p=0.0)):
        l = np.zeros(n, dtype=np.float32)
        ids, probs = Sampler(params, n).candidates(l)
        keep = 10000 if params.top_k == 0 else 100
        assert sorted(ids.tolist()) == list(range(keep))
        assert np.allclose(probs, 1.0 / keep)
    l = np.repeat(np.arange(100, dtype=np.float32)[::-1] / 10, 200)   # 200 tokens per value
    params = SamplingParams(top_k=250, top_p=1.0, min_p=0.0)
    ids, _ = Sampler(params, len(l)).candidates(l)
    assert ids.tolist() == list(range(250))
    ids, _ = Sampler(params.replace(top_k=5000), len(l)).candidates(l)     # quickselect path
    assert sorted(ids.tolist()) == list(range(5000))


# ---------------------------------------------------------------------------------------------
# penalties
# ---------------------------------------------------------------------------------------------


def test_repeat_penalty_flips_argmax():
    l = np.array([2.0, 1.9, -1.0, -1.05, 0.0], dtype=np.float32)
    s = Sampler(SamplingParams.greedy(repeat_penalty=1.1), len(l))
    assert s.sample(l) == 0
    s.accept(0)                                           # 2.0 / 1.1 = 1.82 < 1.9
    assert s.sample(l) == 1
    # negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05
    l2 = np.array([-1.0, -1.05, -5.0], dtype=np.float32)
    s2 = Sampler(SamplingParams.greedy(repeat_penalty=1.1), 3)
    s2.accept(0)
    assert s2.sample(l2) == 1


def test_frequency_and_presence_penalties():
    l = np.array([3.0, 2.5, 2.0], dtype=np.float32)
    s = Sampler(SamplingParams.greedy(frequency_penalty=0.2, presence_penalty=0.0), 3)
    s.accept_many([0, 0])                                 # 3.0 - 0.4 = 2.6 > 2.5
    assert s.sample(l) == 0
    s.accept(0)                                           # 3.0 - 0.6 = 2.4 < 2.5
    assert s.sample(l) == 1
    s = Sampler(SamplingParams.greedy(presence_penalty=0.6), 3)
    s.accept_many([0] * 10)                               # presence counts once: 3.0 - 0.6
    assert s.sample(l) == 1
    s = Sampler(SamplingParams.greedy(presence_penalty=0.4), 3)
    s.accept_many([0] * 10)                               # 2.6 > 2.5
    assert s.sample(l) == 0


@pytest.mark.parametrize("last_n", [0, 1, 3, 16, -1])
def test_penalty_window_matches_numpy(last_n):
    rng = np.random.default_rng(10 + last_n)
    n = 40
    params = SamplingParams(seed=1, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                            repeat_penalty=1.3, frequency_penalty=0.15, presence_penalty=0.25,
                            penalty_last_n=last_n)
    s = Sampler(params, n)
    history = []
    for step in range(60):
        l = random_logits(rng, n, 2.0)
        assert assert_matches_oracle(s, l, params, history)
        t = s.sample(l)
        s.accept(t)
        history.append(t)
    s.reset()
    l = random_logits(rng, n, 2.0)
    assert assert_matches_oracle(s, l, params, [])        # reset empties the window


@pytest.mark.parametrize("n_vocab", [100, 262144])
def test_penalties_with_the_full_chain(n_vocab):
    rng = np.random.default_rng(11)
    params = SamplingParams(seed=5, repeat_penalty=1.5, frequency_penalty=0.5, presence_penalty=-0.3,
                            penalty_last_n=8, top_k=30, top_p=0.9, min_p=0.02)
    s = Sampler(params, n_vocab)
    history = []
    tested = 0
    for _ in range(20):
        l = random_logits(rng, n_vocab, 2.0)
        tested += assert_matches_oracle(s, l, params, history)
        t = s.sample(l)
        s.accept(t)
        history.append(t)
    assert tested >= 15


def test_accept_rejects_out_of_range_tokens():
    s = Sampler(SamplingParams(repeat_penalty=1.2), 10)
    with pytest.raises(ValueError, match="token 10 out of range"):
        s.accept(10)
    with pytest.raises(ValueError, match="out of range"):
        s.accept(-1)


# ---------------------------------------------------------------------------------------------
# NaN / inf logits
# ---------------------------------------------------------------------------------------------


def test_nan_logits_are_never_chosen():
    rng = np.random.default_rng(12)
    l = random_logits(rng, 1000, 1.0)
    l[::2] = np.nan
    l[1] = 50.0                                           # a large odd one: greedy must not pick NaN
    assert Sampler(SamplingParams.greedy(), 1000).sample(l) == 1
    l[1] = 0.0
    s = Sampler(SamplingParams(seed=1, top_k=0, top_p=1.0, min_p=0.0), 1000)
    ids, probs = s.candidates(l)
    assert set(ids.tolist()) == set(range(1, 1000, 2))
    assert np.isclose(probs.sum(), 1.0)
    assert all(s.sample(l) % 2 == 1 for _ in range(500))


def test_all_nan_or_minus_inf_is_an_error():
    for params in (SamplingParams.greedy(), SamplingParams(), SamplingParams(top_k=0)):
        s = Sampler(params, 100)
        l = np.full(100, np.nan, dtype=np.float32)
        l[::3] = -np.inf
        with pytest.raises(ValueError, match="NaN or -inf"):
            s.sample(l)


def test_plus_inf_logits_share_the_mass():
    l = np.zeros(50, dtype=np.float32)
    l[[7, 30]] = np.inf
    for params in (SamplingParams(top_k=0, top_p=1.0, min_p=0.0), SamplingParams()):
        ids, probs = Sampler(params, 50).candidates(l)
        # finite tokens may stay listed (at probability 0) when no filter removes them
        assert {t: p for t, p in zip(ids.tolist(), probs.tolist()) if p > 0} == {7: 0.5, 30: 0.5}
    assert set(Sampler(SamplingParams(), 50).candidates(l)[0].tolist()) == {7, 30}
    assert Sampler(SamplingParams.greedy(), 50).sample(l) == 7


# ---------------------------------------------------------------------------------------------
# log-probabilities
# ---------------------------------------------------------------------------------------------


def log_softmax(l):
    l = l.astype(np.float64)
    m = np.max(l)
    return l - m - np.log(np.sum(np.exp(l - m)))


@pytest.fixture(params=sorted({"scalar", cpu.tier_name()}))
def tier(request):
    """Run a test with the baseline kernels and with this CPU's best (the exp kernels differ
    between SSE2/NEON and AVX2)."""
    with cpu.forced_tier(request.param):
        yield request.param


@pytest.mark.parametrize("n", [10, 262144])
def test_logprobs_match_numpy(n, tier):
    rng = np.random.default_rng(13)
    l = random_logits(rng, n, 4.0)
    want = log_softmax(l)
    k = 10
    ids, lps = top_logprobs(l, k)
    order = np.lexsort((np.arange(n), -want))[:k]
    assert ids.tolist() == order.tolist()
    assert np.allclose(lps, want[order], atol=1e-5)
    for t in (0, n - 1, int(order[0])):
        assert token_logprob(l, t) == pytest.approx(want[t], abs=1e-5)


def test_logprobs_with_nan_and_k_beyond_usable():
    l = np.array([np.nan, 1.0, -np.inf, 0.0], dtype=np.float32)
    ids, lps = top_logprobs(l, 4)
    assert ids.tolist() == [1, 3, 0, 2]
    assert np.allclose(lps[:2], log_softmax(np.array([1.0, 0.0])), atol=1e-6)
    assert np.all(np.isneginf(lps[2:]))
    assert token_logprob(l, 0) == -np.inf
    with pytest.raises(ValueError, match="k = 5"):
        top_logprobs(l, 5)


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("temperature", float("nan")), ("temperature", float("inf")), ("top_p", -0.1), ("top_p", 1.5),
    ("top_p", float("nan")), ("min_p", -0.01), ("min_p", 1.01), ("repeat_penalty", 0.0),
    ("repeat_penalty", -1.0), ("frequency_penalty", float("nan")), ("presence_penalty", float("inf")),
    ("penalty_last_n", -2), ("top_k", 1.5), ("seed", -5), ("seed", 2**64 - 1), ("max_tokens", -3),
    ("stop", ("",)), ("stop", 5), ("temperature", "hot"),
])
def test_invalid_params_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        SamplingParams().replace(**{field: value})


@pytest.mark.parametrize("field,value", [
    ("temperature", float("nan")), ("top_p", -0.5), ("top_p", 1.01), ("min_p", 2.0),
    ("repeat_penalty", 0.0), ("frequency_penalty", float("inf")), ("penalty_last_n", -7),
])
def test_c_core_rejects_bad_params_by_name(field, value):
    p = SamplingParams().to_c()
    setattr(p, field, value)
    out = ffi.new("pg_sampler **")
    assert lib.pg_sampler_create(p, 100, out) == lib.PG_ERR_ARG
    assert field in ffi.string(lib.pg_last_error()).decode()
    assert lib.pg_sampler_create(SamplingParams().to_c(), 0, out) == lib.PG_ERR_ARG
    assert "n_vocab" in ffi.string(lib.pg_last_error()).decode()


def test_defaults_are_llama_cpp_common_params_sampling():
    p = SamplingParams()
    assert (p.temperature, p.top_k, p.top_p, p.min_p) == (0.8, 40, 0.95, 0.05)
    assert (p.repeat_penalty, p.frequency_penalty, p.presence_penalty, p.penalty_last_n) == (1.0, 0.0, 0.0, 64)
    assert p.seed is None and p.max_tokens is None and p.stop == ()
    c = ffi.new("pg_sampler_params *")
    lib.pg_sampler_params_default(c)
    mine = p.to_c()
    for f in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "frequency_penalty",
              "presence_penalty", "penalty_last_n", "seed"):
        assert getattr(c, f) == getattr(mine, f), f


def test_normalized_spellings():
    p = SamplingParams(stop="###", seed=-1, max_tokens=-1)
    assert p.stop == ("###",) and p.seed is None and p.max_tokens is None
    assert SamplingParams(stop=["a", "b"]).stop == ("a", "b")
    g = SamplingParams.greedy(seed=3)
    assert g.is_greedy and g.seed == 3
    assert SamplingParams(top_k=1).is_greedy and not SamplingParams().is_greedy


def test_from_openai():
    req = {"model": "x", "messages": [], "stream": True, "temperature": 0.2, "top_p": 0.5,
           "seed": 11, "presence_penalty": 0.5, "frequency_penalty": -0.5, "stop": ["\n\n", ""],
           "max_tokens": 99, "max_completion_tokens": 7, "top_k": 8, "min_p": 0.1,
           "repeat_penalty": 1.2, "repeat_last_n": 32, "n": 1}
    p = SamplingParams.from_openai(req)
    assert p == SamplingParams(temperature=0.2, top_p=0.5, seed=11, presence_penalty=0.5,
                               frequency_penalty=-0.5, stop=("\n\n",), max_tokens=7, top_k=8,
                               min_p=0.1, repeat_penalty=1.2, penalty_last_n=32)
    assert SamplingParams.from_openai({"max_tokens": 5, "stop": "END"}).max_tokens == 5
    assert SamplingParams.from_openai({"stop": "END"}).stop == ("END",)
    base = SamplingParams(temperature=0.0, top_k=5)
    assert SamplingParams.from_openai({"temperature": None, "top_p": 0.9}, base=base) == base.replace(top_p=0.9)
    assert SamplingParams.from_openai({}) == SamplingParams()
    for bad, name in [({"temperature": "hot"}, "temperature"), ({"top_p": 2}, "top_p"),
                      ({"max_completion_tokens": -5}, "max_completion_tokens"),
                      ({"repeat_last_n": -9}, "repeat_last_n"), ({"stop": [1]}, "stop"),
                      ({"seed": "x"}, "seed")]:
        with pytest.raises(ValueError, match=name):
            SamplingParams.from_openai(bad)


def test_logits_shape_is_checked():
    s = Sampler(SamplingParams(), 10)
    with pytest.raises(ValueError, match="shape"):
        s.sample(np.zeros(11, dtype=np.float32))
    assert s.sample(np.arange(10, dtype=np.float64)) in range(10)   # converted to float32


# ---------------------------------------------------------------------------------------------
# llama.cpp's own samplers as a second oracle
# ---------------------------------------------------------------------------------------------


@pytest.mark.llama
def test_candidate_sets_match_llama_cpp():
    llama_cpp = pytest.importorskip("llama_cpp")
    import ctypes
    rng = np.random.default_rng(14)
    n = 500
    cases = [SamplingParams(), SamplingParams(top_k=0, top_p=0.8, min_p=0.01, temperature=1.3),
             SamplingParams(top_k=25, top_p=1.0, min_p=0.0, temperature=0.5),
             SamplingParams(repeat_penalty=1.4, frequency_penalty=0.3, presence_penalty=0.2,
                            penalty_last_n=5, top_k=50, top_p=0.9)]
    tested = 0
    for params in cases:
        history = [int(t) for t in rng.integers(0, n, 12)] + [1, 1, 2]
        for _ in range(5):
            l = random_logits(rng, n, 2.0)
            must, may, _, _, skip = chain_oracle(l, params, history)
            if skip or must != may:
                continue
            chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_penalties(
                n, params.penalty_last_n, params.repeat_penalty, params.frequency_penalty,
                params.presence_penalty))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            for t in history:
                llama_cpp.llama_sampler_accept(chain, t)
            data = (llama_cpp.llama_token_data * n)()
            for i in range(n):
                data[i].id, data[i].logit, data[i].p = i, float(l[i]), 0.0
            arr = llama_cpp.llama_token_data_array(data=data, size=n, selected=-1, sorted=False)
            llama_cpp.llama_sampler_apply(chain, ctypes.byref(arr))
            theirs = {data[i].id: data[i].logit for i in range(arr.size)}
            llama_cpp.llama_sampler_free(chain)

            s = Sampler(params, n)
            s.accept_many(history)
            ids, probs = s.candidates(l)
            assert set(ids.tolist()) == set(theirs)
            z = np.array(list(theirs.values()), dtype=np.float64)
            want = dict(zip(theirs, np.exp(z - z.max()) / np.exp(z - z.max()).sum()))
            for t, p in zip(ids.tolist(), probs.tolist()):
                assert p == pytest.approx(want[t], rel=1e-4, abs=1e-7)
            tested += 1
    assert tested >= 15
