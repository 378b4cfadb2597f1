"""The scheduler: one thread owns every C call of the server's slots (continuous batching).

Each slot is a Sequence (its own KV cache) over the shared model.  Requests (`Job`s) wait in a
bounded queue; each iteration of the scheduler loop
  1. drops cancelled jobs (client gone) and admits waiting jobs into free slots -- the free
     slot whose cached tokens share the longest prefix with the prompt, which then evaluates
     only the rest;
  2. samples the next token of every slot whose logits are fresh and sends it to its job;
  3. evaluates the sampled tokens of all decoding slots in ONE batched step (one pass over
     the weights for all of them);
  4. evaluates one chunk (n_batch tokens) of one prefilling slot, so long prompts do not
     stall the slots that are decoding.
Jobs receive their events on their own asyncio queue (loop.call_soon_threadsafe).
"""
import collections
import sys
import threading
import time
import traceback

from ..generation import GenerationStats
from ..sequence import eval_batch


class QueueFull(Exception):
    """The wait queue is full (the server answers 503)."""


class Job:
    """One generation request.  Events put on `queue` (from the scheduler thread):
    ("delta", text, TokenLogprob or None), ("done", finish_reason), ("error", message, status)."""

    def __init__(self, ids, params, loop, queue, logprobs=None, constraint=None):
        self.ids, self.params = list(ids), params
        self.loop, self.queue = loop, queue
        self.logprobs, self.constraint = logprobs, constraint
        self.stats = GenerationStats()
        self.stats.prompt_tokens = len(self.ids)
        self.cancelled = False
        self.finished = False

    def emit(self, *event):
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:            # the event loop is closed (server shutting down)
            self.cancelled = True


class Slot:
    def __init__(self, index, seq):
        self.index, self.seq = index, seq
        self.job = self.gen = None
        self.pending = []               # prompt tokens still to evaluate
        self.fresh = False              # logits of the last evaluated token not yet sampled
        self.last_used = 0.0
        self.t_admit = 0.0

    @property
    def free(self):
        return self.job is None


class Scheduler:
    def __init__(self, model, seqs, queue_size=64, log=None):
        """seqs: the slots' Sequences (distinct, over `model`, same n_ctx and n_batch)."""
        self.model = model
        self.slots = [Slot(i, seq) for i, seq in enumerate(seqs)]
        self.n_ctx = self.slots[0].seq.n_ctx
        self.n_batch = self.slots[0].seq.n_batch
        self.queue_size = queue_size
        self.waiting = collections.deque()
        self.cv = threading.Condition()
        self.running = False
        self.thread = None
        self._prefill_turn = 0
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    # ---- called from the event loop ---------------------------------------------------------
    def start(self):
        self.running = True
        self.thread = threading.Thread(target=self._run, name="pygemma-scheduler", daemon=True)
        self.thread.start()

    def stop(self):
        """Stop the thread after its current step; every job still waiting or generating gets
        a 503 error event.  From any thread (the server's drain calls it off the event loop,
        so the join does not stall the loop); calling it again does nothing more."""
        with self.cv:
            self.running = False
            self.cv.notify()
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.join()
        with self.cv:                   # the thread is gone: the slots are ours
            jobs = list(self.waiting) + [s.job for s in self.slots if s.job is not None]
            self.waiting.clear()
            for slot in self.slots:
                if slot.gen is not None:
                    slot.gen.cancel("shutdown")
                slot.job = slot.gen = None
                slot.pending = []
                slot.fresh = False
        for job in jobs:
            job.finished = True
            job.emit("error", "the server is shutting down", 503)

    def submit(self, job):
        with self.cv:
            if not self.running:
                raise QueueFull("the server is shutting down")
            n_free = sum(1 for s in self.slots if s.free)
            if len(self.waiting) - n_free >= self.queue_size:
                raise QueueFull(f"all {len(self.slots)} slots are busy and "
                                f"{self.queue_size} requests are waiting")
            self.waiting.append(job)
            self.cv.notify()

    def cancel(self, job):
        """The client is gone: stop the job at the next iteration."""
        job.cancelled = True
        with self.cv:
            self.cv.notify()

    def stats(self):
        return {"slots": len(self.slots), "busy": sum(1 for s in self.slots if not s.free),
                "waiting": len(self.waiting)}

    # ---- the scheduler thread ---------------------------------------------------------------
    def _run(self):
        while True:
            with self.cv:
                while self.running and not self.waiting and all(s.free for s in self.slots):
                    self.cv.wait()
                if not self.running:
                    return
                admitted = self._admit()
            for slot in admitted:
                self._guard(slot, self._begin, slot)
            try:
                self._iterate()
            except Exception:                          # a bug: keep serving the other slots
                traceback.print_exc()

    def _admit(self):
        """Move waiting jobs into free slots (under cv).  Returns the slots that got one."""
        for job in [j for j in self.waiting if j.cancelled]:     # their clients are gone
            self.waiting.remove(job)
            job.finished = True
        admitted = []
        for job in list(self.waiting):
            free = [s for s in self.slots if s.free]
            if not free:
                break
            # longest shared prefix first, then the least recently used slot
            slot = max(free, key=lambda s: (s.seq.common_prefix(job.ids), -s.last_used))
            self.waiting.remove(job)
            slot.job = job
            admitted.append(slot)
        return admitted

    def _begin(self, slot):
        job = slot.job
        slot.t_admit = time.perf_counter()
        reused, rest = slot.seq.start_prefill(job.ids)
        job.stats.cached_tokens = reused
        slot.pending = rest
        slot.fresh = False
        slot.gen = None

    def _release(self, slot):
        if slot.job is not None:
            slot.job.finished = True
        slot.job = slot.gen = None
        slot.pending = []
        slot.fresh = False
        slot.last_used = time.monotonic()
        with self.cv:
            self.cv.notify()

    def _guard(self, slot, fn, *args):
        """Run fn; on failure report it to the slot's job and free the slot."""
        try:
            fn(*args)
            return True
        except Exception as e:
            self._fail(slot, e)
            return False

    def _fail(self, slot, exc):
        if slot.job is not None:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            slot.job.finished = True
            slot.job.emit("error", f"generation failed: {exc}", 500)
        try:
            slot.seq.reset()                # its cache may be half-written: start clean
        except Exception:
            pass
        self._release(slot)

    def _iterate(self):
        # 1. cancelled jobs free their slots (the cache keeps what was evaluated)
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                if slot.gen is not None:
                    slot.gen.cancel()
                self._release(slot)
        # 2. sample every slot whose logits are fresh
        decoding, tokens = [], []
        for slot in self.slots:
            if slot.job is None or not slot.fresh:
                continue
            slot.fresh = False
            self._guard(slot, self._sample, slot, decoding, tokens)
        # 3. one batched decode step for all of them
        if decoding:
            try:
                eval_batch([s.seq for s in decoding], tokens)
                for s in decoding:
                    s.fresh = True
            except Exception as e:
                for s in decoding:
                    self._fail(s, e)
        # 4. one prefill chunk, slots taking turns
        prefilling = [s for s in self.slots if s.job is not None and s.pending]
        if prefilling:
            slot = prefilling[self._prefill_turn % len(prefilling)]
            self._prefill_turn += 1
            self._guard(slot, self._prefill_chunk, slot)

    def _prefill_chunk(self, slot):
        chunk, slot.pending = slot.pending[:self.n_batch], slot.pending[self.n_batch:]
        slot.seq._eval(chunk)
        if not slot.pending:
            job = slot.job
            job.stats.prompt_seconds = time.perf_counter() - slot.t_admit
            slot.gen = self.model.new_generation(slot.seq, job.params, job.stats,
                                                 job.logprobs, job.constraint)
            slot.fresh = True

    def _sample(self, slot, decoding, tokens):
        gen, job = slot.gen, slot.job
        step = gen.step(slot.seq.last_logits())
        if step.text or step.logprob is not None:
            job.emit("delta", step.text, step.logprob)
        if gen.done:
            job.finished = True                 # before the event: the handler may exit at once
            job.emit("done", gen.finish_reason)
            self._release(slot)
        else:
            decoding.append(slot)
            tokens.append(step.token)
