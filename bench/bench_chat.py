"""The chatbot's KV-cache reuse: tokens evaluated per turn, and /forget in place vs re-evaluation.

    python bench/bench_chat.py [-m MODEL] [--turns 8] [--threads 2]

Each turn of a growing conversation should evaluate only its own tokens (the rest is in the
cache); /forget cuts the oldest exchange out of the cache (pg_context_shift) instead of
re-evaluating everything after the system prompt.  Prints one line per turn, then the time
/forget took and the time re-evaluating the same tokens from scratch would take.
"""
import argparse
import time

import pygemma
from pygemma.chat_session import Conversation
from pygemma.chat_template import ChatTemplate
from pygemma.sampling import SamplingParams


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: the 270M package)")
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reply-tokens", type=int, default=64)
    args = ap.parse_args()
    with pygemma.Model(args.model, n_ctx=4096, n_threads=args.threads) as m:
        conv = Conversation(m, ChatTemplate.for_model(m, force="gemma"), "You are terse.",
                            SamplingParams.greedy(max_tokens=args.reply_tokens))
        print("turn  prompt  reused  evaluated  generated")
        for i in range(args.turns):
            conv.add_user(f"Tell me fact number {i} about the history of Rome, in detail. " * 6)
            "".join(conv.reply())
            s = m.last_stats
            print(f"{i + 1:4d} {s.prompt_tokens:7d} {s.cached_tokens:7d} "
                  f"{s.prompt_tokens - s.cached_tokens:10d} {s.completion_tokens:10d}")
        cached = len(m.tokens)
        t0 = time.perf_counter()
        cut = conv.forget()
        forget_s = time.perf_counter() - t0
        ids = list(conv.ids)
        t0 = time.perf_counter()
        m.reset()
        m.prefill(ids)
        reeval_s = time.perf_counter() - t0
        print(f"/forget: {cut} tokens cut out of {cached} cached in {forget_s * 1000:.1f} ms; "
              f"re-evaluating the remaining {len(ids)} tokens: {reeval_s * 1000:.1f} ms "
              f"({reeval_s / forget_s:.0f}x)")


if __name__ == "__main__":
    main()
