/*
 * answer.c — answers with base64 holes, encoded block by block (answer.h).
 */
#include "answer.h"

#include "base64.h"

#include <stdlib.h>
#include <string.h>

struct answer {
    char *text;
    size_t len, total;
    codec_hole holes[ANSWER_MAX_HOLES];
    int n;
};

answer *answer_new(char *text, size_t len, const codec_hole *holes, int n)
{
    if (n < 0 || n > ANSWER_MAX_HOLES)
        return NULL;
    answer *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->text = text;
    a->len = a->total = len;
    for (int k = 0; k < n; k++) {
        a->holes[k] = holes[k];
        a->total += base64_encoded_len(holes[k].nbytes);
    }
    a->n = n;
    return a;
}

size_t answer_size(const answer *a)
{
    return a->total;
}

void answer_free(void *p)
{
    answer *a = p;
    if (!a)
        return;
    for (int k = 0; k < a->n; k++)
        free(a->holes[k].data);
    free(a->text);
    free(a);
}

/* Characters [k, k + n) of the base64 of h into out: whole groups from a group boundary
 * straight from the bytes, a group split by the block through a copy of that group. */
static void hole_chars(const codec_hole *h, size_t k, char *out, size_t n)
{
    const unsigned char *d = h->data;
    const size_t chars_all = base64_encoded_len(h->nbytes);
    while (n) {
        const size_t g = k / 4, in_group = k % 4, rest = chars_all - k;
        if (in_group == 0 && n >= 4) {
            /* whole groups, or everything to the end (with its padding) */
            const size_t chars = n >= rest ? rest : n / 4 * 4;
            const size_t bytes = chars == rest ? h->nbytes - g * 3 : chars / 4 * 3;
            base64_encode(out, d + g * 3, bytes);
            out += chars, k += chars, n -= chars;
            continue;
        }
        char grp[4];
        const size_t gb = h->nbytes - g * 3 < 3 ? h->nbytes - g * 3 : 3;
        base64_encode(grp, d + g * 3, gb);
        const size_t take = 4 - in_group < n ? 4 - in_group : n;
        memcpy(out, grp + in_group, take);
        out += take, k += take, n -= take;
    }
}

size_t answer_read(const answer *a, uint64_t pos, char *out, size_t max)
{
    size_t done = 0, at = 0, text_at = 0; /* at: answer offset where the current piece starts */
    for (int k = 0; k <= a->n && done < max; k++) {
        /* the text up to hole k (or to the end), then hole k */
        const size_t t_end = k < a->n ? a->holes[k].off : a->len, t_len = t_end - text_at;
        if (pos + done < at + t_len) {
            const size_t off = (size_t)(pos + done - at);
            const size_t n = t_len - off < max - done ? t_len - off : max - done;
            memcpy(out + done, a->text + text_at + off, n);
            done += n;
        }
        at += t_len;
        text_at = t_end;
        if (k == a->n || done >= max)
            break;
        const size_t h_len = base64_encoded_len(a->holes[k].nbytes);
        if (pos + done < at + h_len) {
            const size_t off = (size_t)(pos + done - at);
            const size_t n = h_len - off < max - done ? h_len - off : max - done;
            hole_chars(&a->holes[k], off, out + done, n);
            done += n;
        }
        at += h_len;
    }
    return done;
}
