"""fuzz_request.py -- atheris (libFuzzer for Python) harness: the server's request validation.

The input is a request body.  It goes through what the server does with a body before a slot
sees it: JSON parsing (validate.parse_json), then each endpoint's validation
(chat_request with the chat template, completion_request, tokenize_request,
detokenize_request) on the real tokenizer of the model named by PYGEMMA_FUZZ_VOCAB.
A body is either refused with an APIError (the server's 4xx) or accepted; then its sampling
parameters must build the C sampler (what validation accepts, C accepts) and its token ids
must be in the vocabulary.  Any other exception, or an error message longer than
MAX_MESSAGE characters (messages quote short excerpts, never the input), is a finding.

    PYGEMMA_FUZZ_VOCAB=model.gguf python csrc/fuzz/fuzz_request.py -runs=100000 csrc/fuzz/corpus/request

ci/fuzz.sh runs it as the harness `request` (when atheris is installed).
"""
import os
import sys

import atheris

with atheris.instrument_imports(include=["pygemma"]):
    import pygemma
    from pygemma.sampling import Sampler, SamplingParams
    from pygemma.server import validate
    from pygemma.server.chat_prompt import PromptBuilder
    from pygemma.server.errors import APIError

MAX_MESSAGE = 400
N_CTX = 256
ENDPOINTS = ("chat", "completions", "tokenize", "detokenize")

model = None
prompts = None


def setup():
    global model, prompts
    path = os.environ.get("PYGEMMA_FUZZ_VOCAB")
    if not path:
        sys.exit("fuzz_request.py: set PYGEMMA_FUZZ_VOCAB to a GGUF model (its tokenizer is used)")
    model = pygemma.Model(path, n_ctx=N_CTX, n_threads=1)
    prompts = PromptBuilder(model)


def validate_body(endpoint, body):
    """The endpoint's validation; returns the accepted request (or None for a refusal)."""
    base = SamplingParams(max_tokens=4)
    if endpoint == "chat":
        return validate.chat_request(body, prompts, N_CTX, base)
    if endpoint == "completions":
        return validate.completion_request(body, model, N_CTX, base)
    if endpoint == "tokenize":
        content, add_special, _ = validate.tokenize_request(body, model)
        ids = model.tokenize(content, add_bos=add_special, special=True)
        validate.check_answer_size(ids, False)
        return None
    tokens = validate.detokenize_request(body, model)
    model.detokenize(tokens)
    return None


def TestOneInput(data):
    if not data:
        return
    endpoint = ENDPOINTS[data[0] % len(ENDPOINTS)]
    try:
        body = validate.parse_json(data[1:])
        req = validate_body(endpoint, body)
    except APIError as e:
        if len(e.message) > MAX_MESSAGE:
            raise AssertionError(f"a {len(e.message)}-character error message: {e.message[:200]}...")
        return
    if req is not None:
        Sampler(req.params, model.n_vocab)          # raises if C refuses what validation accepted
        if not all(0 <= t < model.n_vocab for t in req.ids):
            raise AssertionError("an accepted prompt has token ids outside the vocabulary")


if __name__ == "__main__":
    setup()
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
