/* wfile.c - output files for the checkpoint writers.
 *
 * Through base/outfile.c: a regular file (or a new path) is written to PATH.tmp.XXXXXX and
 * renamed onto PATH only once fully written and closed, so any failure leaves no partial
 * output; a device or FIFO is written directly. Det-weights are generated in chunks and
 * written as f32, f16, bf16, or quantized to Q8_0 / Q4_0 blocks.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "weights.h"
#include "../runtime/kiln_blob.h"

#define WF_CHUNK (1u << 20) /* floats generated at a time; a multiple of QUANT_BLOCK */

struct wfile {
    outfile out;
    char *path;
};

wfile *wfile_open(const char *path) {
    wfile *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        diag_file_error(path, "out of memory");
        free(w);
        return NULL;
    }
    if (outfile_open(&w->out, w->path, 0644, OUTFILE_STREAM) != 0) {
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

void wfile_abort(wfile *w) {
    if (!w) return;
    outfile_abort(&w->out);
    free(w->path);
    free(w);
}

int wfile_write(wfile *w, const void *p, size_t n) {
    return outfile_write(&w->out, p, n);
}

int wfile_put_f32(wfile *w, const float *v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return n > SIZE_MAX / 4 ? -1 : wfile_write(w, v, n * 4);
#else
    unsigned char b[4];
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[k] = (unsigned char)(u >> (8 * k));
        if (wfile_write(w, b, 4)) return -1;
    }
    return 0;
#endif
}

int wfile_put_detweights(wfile *w, const char *name, uint64_t n, uint64_t seed) {
    return wfile_put_detweights_as(w, name, n, seed, CK_F32);
}

int wfile_put_detweights_as(wfile *w, const char *name, uint64_t n, uint64_t seed,
                            ckpt_dtype dtype) {
    float *buf = malloc(WF_CHUNK * sizeof *buf);
    unsigned char *out = malloc(WF_CHUNK * 2);
    if (!buf || !out) {
        free(buf);
        free(out);
        diag_file_error(w->path, "out of memory");
        return -1;
    }
    int rc = 0, blocks = dtype == CK_Q8_0 || dtype == CK_Q4_0;
    if (blocks && n % QUANT_BLOCK) {
        diag_file_error(w->path, "tensor '%s': %" PRIu64 " values are not whole blocks of %d",
                        name, n, QUANT_BLOCK);
        rc = -1;
    }
    for (uint64_t a = 0; a < n && rc == 0; a += WF_CHUNK) {
        uint64_t m = n - a < WF_CHUNK ? n - a : WF_CHUNK;
        detweights_fill(buf, name, a, m, seed);
        if (dtype == CK_F32) {
            rc = wfile_put_f32(w, buf, (size_t)m);
            continue;
        }
        if (blocks) {   /* WF_CHUNK is whole blocks, so blocks never straddle two chunks */
            if (dtype == CK_Q8_0) quant_q8_0_row(buf, out, (int64_t)m);
            else quant_q4_0_row(buf, out, (int64_t)m);
            rc = wfile_write(w, out, (size_t)(m / QUANT_BLOCK) *
                                     (dtype == CK_Q8_0 ? Q8_0_BYTES : Q4_0_BYTES));
            continue;
        }
        for (uint64_t j = 0; j < m; j++) {   /* byte by byte: little-endian on any host */
            uint16_t h = dtype == CK_F16 ? kblob_f32_to_f16(buf[j]) : kblob_f32_to_bf16(buf[j]);
            out[2 * j] = (unsigned char)h, out[2 * j + 1] = (unsigned char)(h >> 8);
        }
        rc = wfile_write(w, out, (size_t)m * 2);
    }
    free(buf);
    free(out);
    return rc;
}

int wfile_commit(wfile *w) {
    int rc = outfile_commit(&w->out);
    free(w->path);
    free(w);
    return rc;
}
