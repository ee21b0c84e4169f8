/* pack.c - writing the weight blob (see pack.h and runtime/kiln_blob.h).
 *
 * The header, entry table and names are built in memory; tensor data is written straight
 * from the caller's buffers in large chunks, with zero padding between tensors so every
 * data offset is a multiple of KBLOB_ALIGN. Every blob ends with the checksums entry
 * (kiln_blob.h, KBLOB_CHECKSUMS): one pass over the weights in memory before they are
 * written, at memory speed.
 */
#define _POSIX_C_SOURCE 200809L

#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "../runtime/kiln_blob.h"

#define PACK_PAGE 4096u
#define PACK_CHUNK ((size_t)1 << 26)   /* at most 64 MiB per write() */

static void pack_error(const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", path);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int write_all(int fd, const void *buf, uint64_t n)
{
    const char *p = buf;
    while (n > 0) {
        size_t k = n < PACK_CHUNK ? (size_t)n : PACK_CHUNK;
        ssize_t w = write(fd, p, k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        p += w;
        n -= (uint64_t)w;
    }
    return 0;
}

static int write_zeros(int fd, uint64_t n)
{
    static const char zeros[PACK_PAGE];
    while (n > 0) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        if (write_all(fd, zeros, k) < 0)
            return -1;
        n -= k;
    }
    return 0;
}

/* Every tensor's byte size must follow from its dtype and shape (kblob_tensor_bytes, block
 * types included), and the whole blob must fit in 64 bits: the reader checks the same, so a
 * blob that passes here is one the program accepts. */
static int check_tensors(const char *path, const pack_tensor *t, int n)
{
    if (n < 0 || (n > 0 && !t)) {
        pack_error(path, "bad tensor list (%d tensors)", n);
        return -1;
    }
    uint64_t total = sizeof(kblob_header) + (uint64_t)n * sizeof(kblob_entry);
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name ? t[i].name : "(null)";
        if (!t[i].name || !t[i].name[0] || t[i].rank > 4 || (t[i].nbytes && !t[i].data)) {
            pack_error(path, "tensor %d '%s': bad name, rank %u or data", i, nm, t[i].rank);
            return -1;
        }
        const char *dt = kblob_dtype_name(t[i].dtype);
        if (!dt) {
            pack_error(path, "tensor %d '%s': unknown dtype code %u", i, nm, t[i].dtype);
            return -1;
        }
        if (!kblob_layout_name(t[i].layout) || (t[i].layout == KBLOB_PANEL && t[i].rank != 2)) {
            pack_error(path, "tensor %d '%s': layout %u (panels are for matrices)", i, nm,
                       t[i].layout);
            return -1;
        }
        uint64_t bytes, row = t[i].rank ? t[i].dims[t[i].rank - 1] : 1;
        if (kblob_tensor_bytes(t[i].dtype, t[i].rank, t[i].dims, &bytes) < 0) {
            if ((t[i].dtype == KBLOB_Q8_0 || t[i].dtype == KBLOB_Q4_0) && row % KBLOB_BLOCK)
                pack_error(path, "tensor %d '%s': %s rows of %llu elements are not a whole "
                           "number of %u-element blocks", i, nm, dt, (unsigned long long)row,
                           KBLOB_BLOCK);
            else
                pack_error(path, "tensor %d '%s': the byte size of its %s shape overflows", i,
                           nm, dt);
            return -1;
        }
        if (bytes != t[i].nbytes) {
            pack_error(path, "tensor %d '%s': %llu bytes do not match its shape (%s: %llu)", i,
                       nm, (unsigned long long)t[i].nbytes, dt, (unsigned long long)bytes);
            return -1;
        }
        /* name, padding to the alignment, data */
        if (__builtin_add_overflow(total, strlen(t[i].name) + 1 + KBLOB_ALIGN, &total) ||
            __builtin_add_overflow(total, bytes, &total)) {
            pack_error(path, "tensor %d '%s': the blob's size overflows", i, nm);
            return -1;
        }
    }
    return 0;
}

/* The checksums entry (kiln_blob.h, KBLOB_CHECKSUMS) of the n tensors before it, into sums
 * (n + 2 words): each tensor's data, the metadata [0, meta_len), then the words before. */
static void checksum_words(const pack_tensor *t, int n, const char *meta, uint64_t meta_len,
                           uint64_t *sums)
{
    for (int i = 0; i < n; i++)
        sums[i] = kblob_hash64(t[i].data, t[i].nbytes);
    sums[n] = kblob_hash64(meta, meta_len);
    sums[n + 1] = kblob_hash64(sums, 8 * ((uint64_t)n + 1));
}

/* Write the blob at fd's current position: the n tensors, then the checksums entry; *size
 * gets its length. Reports its own errors. */
static int write_blob(int fd, const char *path, const pack_tensor *in, int nin, uint64_t *size)
{
    if (nin < 0 || nin > INT32_MAX - 1 || (nin > 0 && !in)) {
        pack_error(path, "bad tensor list (%d tensors)", nin);
        return -1;
    }
    int n = nin + 1;
    pack_tensor *t = calloc((size_t)n, sizeof *t);
    uint64_t *sums = calloc((size_t)n + 1, 8);
    if (!t || !sums) {
        free(t), free(sums);
        pack_error(path, "out of memory");
        return -1;
    }
    if (nin)
        memcpy(t, in, (size_t)nin * sizeof *t);
    t[nin] = (pack_tensor){KBLOB_CHECKSUMS, KBLOB_U8, 1, {8 * ((uint64_t)nin + 2)}, sums,
                           8 * ((uint64_t)nin + 2), KBLOB_ROWS};
    if (check_tensors(path, t, n) < 0) {
        free(t), free(sums);
        return -1;
    }
    tmp_test_pause("pack");
    uint64_t table = sizeof(kblob_header), names = table + (uint64_t)n * sizeof(kblob_entry);
    uint64_t pos = names;
    for (int i = 0; i < n; i++)
        pos += strlen(t[i].name) + 1;
    uint64_t meta_size = pos, first = align_up(meta_size, KBLOB_ALIGN);
    char *meta = calloc(1, (size_t)first);   /* with the zeros up to the first tensor */
    if (!meta) {
        free(t), free(sums);
        pack_error(path, "out of memory");
        return -1;
    }
    kblob_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, KBLOB_MAGIC, 8);
    h.version = KBLOB_VERSION;
    h.n_tensors = (uint32_t)n;
    h.table_offset = table;
    uint64_t name_pos = names, data_pos = meta_size;
    for (int i = 0; i < n; i++) {
        kblob_entry e;
        memset(&e, 0, sizeof e);
        size_t len = strlen(t[i].name) + 1;
        memcpy(meta + name_pos, t[i].name, len);
        e.name_offset = name_pos;
        name_pos += len;
        data_pos = align_up(data_pos, KBLOB_ALIGN);
        e.offset = data_pos;
        e.nbytes = t[i].nbytes;
        data_pos += t[i].nbytes;
        e.dtype = t[i].dtype;
        e.layout = t[i].layout;
        e.rank = t[i].rank;
        for (uint32_t d = 0; d < t[i].rank; d++)
            e.dims[d] = t[i].dims[d];
        memcpy(meta + table + (uint64_t)i * sizeof e, &e, sizeof e);
    }
    h.total_size = data_pos;
    memcpy(meta, &h, sizeof h);
    checksum_words(t, nin, meta, first, sums);

    int rc = write_all(fd, meta, meta_size);
    uint64_t at = meta_size;
    for (int i = 0; rc == 0 && i < n; i++) {
        uint64_t start = align_up(at, KBLOB_ALIGN);
        rc = write_zeros(fd, start - at);
        if (rc == 0)
            rc = write_all(fd, t[i].data, t[i].nbytes);
        at = start + t[i].nbytes;
    }
    free(meta);
    free(t);
    free(sums);
    if (rc < 0) {
        pack_error(path, "cannot write: %s", strerror(errno));
        return -1;
    }
    *size = h.total_size;
    return 0;
}

int pack_append_blob(const char *path, const pack_tensor *t, int n)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0) {
        pack_error(path, "cannot open for appending: %s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_END) < 0) {
        pack_error(path, "cannot stat: %s", strerror(errno));
        close(fd);
        return -1;
    }
    uint64_t orig = (uint64_t)st.st_size, blob_off = align_up(orig, PACK_PAGE), size = 0;
    int rc = -1;
    if (write_zeros(fd, blob_off - orig) < 0)
        pack_error(path, "cannot write: %s", strerror(errno));
    else if (write_blob(fd, path, t, n, &size) == 0) {
        kblob_trailer tr;
        memset(&tr, 0, sizeof tr);
        tr.blob_offset = blob_off;
        tr.blob_size = size;
        memcpy(tr.magic, KBLOB_TRAILER_MAGIC, 8);
        if (write_all(fd, &tr, sizeof tr) < 0)
            pack_error(path, "cannot write: %s", strerror(errno));
        else
            rc = 0;
    }
    if (rc < 0 && ftruncate(fd, (off_t)orig) < 0)
        pack_error(path, "cannot restore the original size: %s", strerror(errno));
    if (close(fd) < 0 && rc == 0) {
        pack_error(path, "cannot write: %s", strerror(errno));
        rc = -1;
    }
    return rc;
}

int pack_write_blob(const char *path, const pack_tensor *t, int n)
{
    outfile o;
    if (outfile_open(&o, path, 0644, 0) != 0)
        return -1;
    uint64_t size;
    if (write_blob(o.fd, path, t, n, &size) != 0) {
        outfile_abort(&o);
        return -1;
    }
    return outfile_commit(&o);
}
