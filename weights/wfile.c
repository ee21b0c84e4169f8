/* wfile.c - output files for the checkpoint writers.
 *
 * Everything goes to PATH.tmp.XXXXXX (mkstemp) and is renamed onto PATH only once fully
 * written and closed; any failure unlinks the temporary, so no partial output is left.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "weights.h"

#define WF_CHUNK (1u << 20) /* floats generated at a time */

struct wfile {
    FILE *f;
    char *tmp;
    char *path;
};

static void wfile_free(wfile *w) {
    free(w->tmp);
    free(w->path);
    free(w);
}

wfile *wfile_open(const char *path) {
    wfile *w = calloc(1, sizeof *w);
    size_t len = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(len + sizeof ".tmp.XXXXXX"))) {
        diag_file_error(path, "out of memory");
        if (w) wfile_free(w);
        return NULL;
    }
    memcpy(w->tmp, path, len);
    memcpy(w->tmp + len, ".tmp.XXXXXX", sizeof ".tmp.XXXXXX");
    int fd = mkstemp(w->tmp);
    if (fd < 0) {
        diag_file_error(path, "cannot create a temporary file beside it: %s", strerror(errno));
        wfile_free(w);
        return NULL;
    }
    (void)fchmod(fd, 0644);
    if (!(w->f = fdopen(fd, "wb"))) {
        diag_file_error(path, "cannot open %s: %s", w->tmp, strerror(errno));
        close(fd);
        unlink(w->tmp);
        wfile_free(w);
        return NULL;
    }
    return w;
}

void wfile_abort(wfile *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    unlink(w->tmp);
    wfile_free(w);
}

int wfile_write(wfile *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) {
        diag_file_error(w->path, "write failed: %s", strerror(errno));
        return -1;
    }
    return 0;
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
    float *buf = malloc(WF_CHUNK * sizeof *buf);
    if (!buf) {
        diag_file_error(w->path, "out of memory");
        return -1;
    }
    int rc = 0;
    for (uint64_t a = 0; a < n && rc == 0; a += WF_CHUNK) {
        uint64_t m = n - a < WF_CHUNK ? n - a : WF_CHUNK;
        detweights_fill(buf, name, a, m, seed);
        rc = wfile_put_f32(w, buf, (size_t)m);
    }
    free(buf);
    return rc;
}

int wfile_commit(wfile *w) {
    int rc = 0;
    if (fflush(w->f) != 0 || ferror(w->f)) {
        diag_file_error(w->path, "write failed: %s", strerror(errno));
        rc = -1;
    }
    if (fclose(w->f) != 0 && rc == 0) {
        diag_file_error(w->path, "write failed: %s", strerror(errno));
        rc = -1;
    }
    w->f = NULL;
    if (rc == 0 && rename(w->tmp, w->path) != 0) {
        diag_file_error(w->path, "cannot rename %s onto it: %s", w->tmp, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(w->tmp);
    wfile_free(w);
    return rc;
}
