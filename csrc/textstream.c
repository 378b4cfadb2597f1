/* textstream.c -- stop strings and UTF-8 boundaries for streamed generation output.
 *
 * Each stop string has a KMP matcher whose state is the length of the longest suffix of the
 * stream that is a prefix of the stop string.  Bytes are matched one at a time, so a stop is
 * found at the exact byte that completes it, however the bytes were split into pieces, and the
 * tail to hold back is simply the largest state.  What may be shown goes through a UTF-8
 * decoder that holds an incomplete character and replaces invalid bytes with U+FFFD, so every
 * chunk returned is whole, valid UTF-8.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef struct {
    unsigned char *s;          /* (len) the stop string */
    int32_t *fail;             /* (len) KMP failure: longest proper border of s[0..i] */
    int32_t len;
    int32_t state;             /* bytes of s matched by the end of the stream */
} stop_matcher;

struct pg_textstream {
    stop_matcher *stops;       /* (n_stops) */
    int32_t n_stops;
    unsigned char *pending;    /* (pending_cap) bytes fed but not yet returned */
    size_t pending_len, pending_cap;
    unsigned char *out;        /* (out_cap) the chunk returned by the last call */
    size_t out_cap;
    int stopped, finished;
    int32_t stop_index;
};

static pg_status reserve(unsigned char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return PG_OK;
    size_t c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    unsigned char *b = realloc(*buf, c);
    if (!b) return pg_fail(PG_ERR_NOMEM, "textstream: out of memory (%zu bytes)", c);
    *buf = b;
    *cap = c;
    return PG_OK;
}

/* ---- UTF-8 ---- */

/* Write U+FFFD (EF BF BD) at o. */
static size_t put_replacement(unsigned char *o) {
    o[0] = 0xEF;
    o[1] = 0xBF;
    o[2] = 0xBD;
    return 3;
}

/* Decode p (n) into o (room for 3n bytes): whole characters are copied, each maximal invalid
 * subpart (Unicode's "best practice", what Python's errors="replace" does) becomes one U+FFFD.
 * A valid but incomplete character at the end is left unconsumed unless `final`, where it
 * becomes one U+FFFD.  Returns the bytes consumed; *n_out the bytes written. */
static size_t utf8_decode(const unsigned char *p, size_t n, int final, unsigned char *o, size_t *n_out) {
    size_t i = 0, w = 0;
    while (i < n) {
        const unsigned char b = p[i];
        if (b < 0x80) {
            o[w++] = b;
            i++;
            continue;
        }
        /* continuation count and the allowed range of the second byte (Unicode table 3-7) */
        int need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b == 0xE0) need = 2, lo = 0xA0;
        else if (b == 0xED) need = 2, hi = 0x9F;       /* no UTF-16 surrogates */
        else if (b >= 0xE1 && b <= 0xEF) need = 2;
        else if (b == 0xF0) need = 3, lo = 0x90;
        else if (b == 0xF4) need = 3, hi = 0x8F;       /* nothing above U+10FFFF */
        else if (b >= 0xF1 && b <= 0xF3) need = 3;
        else {                                          /* 80..C1, F5..FF never start a character */
            w += put_replacement(o + w);
            i++;
            continue;
        }
        int j = 1;
        for (; j <= need; j++) {
            if (i + j >= n) break;                      /* ran out of bytes */
            const unsigned char c = p[i + j];
            if (c < (j == 1 ? lo : 0x80) || c > (j == 1 ? hi : 0xBF)) break;
        }
        if (j > need) {                                 /* a whole character */
            memcpy(o + w, p + i, (size_t)need + 1);
            w += (size_t)need + 1;
            i += (size_t)need + 1;
        } else if (i + j >= n && !final) {              /* may still complete: hold it */
            break;
        } else {                                        /* a broken prefix of j bytes */
            w += put_replacement(o + w);
            i += (size_t)j;
        }
    }
    *n_out = w;
    return i;
}

/* Append the decoded text of pending[0..n) to ts->out and drop what was consumed. */
static pg_status emit(pg_textstream *ts, size_t n, int final, size_t *out_len) {
    PG_TRY(reserve(&ts->out, &ts->out_cap, *out_len + 3 * n + 1));
    size_t w;
    const size_t used = utf8_decode(ts->pending, n, final, ts->out + *out_len, &w);
    *out_len += w;
    if (used > 0) {
        memmove(ts->pending, ts->pending + used, ts->pending_len - used);
        ts->pending_len -= used;
    }
    return PG_OK;
}

/* ---- stop strings ---- */

static void build_fail(stop_matcher *m) {
    m->fail[0] = 0;
    for (int32_t i = 1, k = 0; i < m->len; i++) {
        while (k > 0 && m->s[i] != m->s[k]) k = m->fail[k - 1];
        if (m->s[i] == m->s[k]) k++;
        m->fail[i] = k;
    }
}

/* Advance the matcher by byte c; returns 1 when the whole stop string has just matched. */
static int matcher_step(stop_matcher *m, unsigned char c) {
    int32_t k = m->state;
    if (k == m->len) k = m->fail[k - 1];
    while (k > 0 && c != m->s[k]) k = m->fail[k - 1];
    if (c == m->s[k]) k++;
    m->state = k;
    return k == m->len;
}

PG_API void pg_textstream_free(pg_textstream *ts) {
    if (!ts) return;
    for (int32_t i = 0; i < ts->n_stops; i++) {
        free(ts->stops[i].s);
        free(ts->stops[i].fail);
    }
    free(ts->stops);
    free(ts->pending);
    free(ts->out);
    free(ts);
}

PG_API pg_status pg_textstream_create(const char *const *stops, const size_t *stop_lens,
                                      int32_t n_stops, pg_textstream **out) {
    if (!out) return pg_fail(PG_ERR_ARG, "pg_textstream_create: NULL out");
    *out = NULL;
    if (n_stops < 0 || n_stops > PG_TEXTSTREAM_MAX_STOPS)
        return pg_fail(PG_ERR_ARG, "textstream: %d stop strings; at most %d are allowed",
                       (int)n_stops, PG_TEXTSTREAM_MAX_STOPS);
    if (n_stops > 0 && (!stops || !stop_lens)) return pg_fail(PG_ERR_ARG, "pg_textstream_create: NULL stops");
    for (int32_t i = 0; i < n_stops; i++) {
        if (stop_lens[i] == 0 || !stops[i])
            return pg_fail(PG_ERR_ARG, "textstream: stop string %d is empty", (int)i);
        if (stop_lens[i] > PG_TEXTSTREAM_MAX_STOP_BYTES)
            return pg_fail(PG_ERR_ARG, "textstream: stop string %d is %zu bytes; at most %d are allowed",
                           (int)i, stop_lens[i], PG_TEXTSTREAM_MAX_STOP_BYTES);
    }
    pg_textstream *ts = calloc(1, sizeof *ts);
    if (!ts) return pg_fail(PG_ERR_NOMEM, "textstream: out of memory");
    ts->stop_index = -1;
    if (n_stops > 0 && !(ts->stops = calloc((size_t)n_stops, sizeof *ts->stops))) {
        pg_textstream_free(ts);
        return pg_fail(PG_ERR_NOMEM, "textstream: out of memory");
    }
    for (int32_t i = 0; i < n_stops; i++) {
        stop_matcher *m = &ts->stops[ts->n_stops++];
        m->len = (int32_t)stop_lens[i];
        m->s = malloc(stop_lens[i]);
        m->fail = malloc(stop_lens[i] * sizeof *m->fail);
        if (!m->s || !m->fail) {
            pg_textstream_free(ts);
            return pg_fail(PG_ERR_NOMEM, "textstream: out of memory");
        }
        memcpy(m->s, stops[i], stop_lens[i]);
        build_fail(m);
    }
    *out = ts;
    return PG_OK;
}

PG_API void pg_textstream_reset(pg_textstream *ts) {
    if (!ts) return;
    for (int32_t i = 0; i < ts->n_stops; i++) ts->stops[i].state = 0;
    ts->pending_len = 0;
    ts->stopped = ts->finished = 0;
    ts->stop_index = -1;
}

PG_API int32_t pg_textstream_stop_index(const pg_textstream *ts) { return ts ? ts->stop_index : -1; }

PG_API size_t pg_textstream_held(const pg_textstream *ts) { return ts ? ts->pending_len : 0; }

PG_API pg_status pg_textstream_feed(pg_textstream *ts, const char *bytes, size_t n,
                                    const char **out, size_t *n_out, int *stopped) {
    if (!ts || !out || !n_out || !stopped || (n > 0 && !bytes))
        return pg_fail(PG_ERR_ARG, "pg_textstream_feed: NULL argument");
    *out = "";
    *n_out = 0;
    *stopped = ts->stopped;
    if (ts->stopped) return PG_OK;
    if (ts->finished) return pg_fail(PG_ERR_STATE, "textstream: feed after flush (call reset to start again)");
    PG_TRY(reserve(&ts->pending, &ts->pending_cap, ts->pending_len + n));
    size_t out_len = 0;
    const unsigned char *b = (const unsigned char *)bytes;
    for (size_t i = 0; i < n; i++) {
        ts->pending[ts->pending_len++] = b[i];
        int32_t hit = -1;
        for (int32_t j = 0; j < ts->n_stops; j++)      /* on a tie the longer stop started first */
            if (matcher_step(&ts->stops[j], b[i]) && (hit < 0 || ts->stops[j].len > ts->stops[hit].len))
                hit = j;
        if (hit >= 0) {
            /* the stop string's first len-1 bytes were held back, so it lies inside pending */
            PG_TRY(emit(ts, ts->pending_len - (size_t)ts->stops[hit].len, 1, &out_len));
            ts->pending_len = 0;
            ts->stopped = 1;
            ts->stop_index = hit;
            *stopped = 1;
            break;
        }
    }
    if (!ts->stopped) {
        int32_t hold = 0;                               /* the longest tail that may become a stop */
        for (int32_t j = 0; j < ts->n_stops; j++) hold = PG_MAX(hold, ts->stops[j].state);
        PG_TRY(emit(ts, ts->pending_len - (size_t)hold, 0, &out_len));
    }
    *out = (const char *)ts->out;
    *n_out = out_len;
    return PG_OK;
}

PG_API pg_status pg_textstream_flush(pg_textstream *ts, const char **out, size_t *n_out) {
    if (!ts || !out || !n_out) return pg_fail(PG_ERR_ARG, "pg_textstream_flush: NULL argument");
    *out = "";
    *n_out = 0;
    if (ts->stopped || ts->finished) return PG_OK;
    size_t out_len = 0;
    PG_TRY(emit(ts, ts->pending_len, 1, &out_len));
    ts->finished = 1;
    *out = (const char *)ts->out;
    *n_out = out_len;
    return PG_OK;
}
