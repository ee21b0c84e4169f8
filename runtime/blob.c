/* blob.c - mapping the weight blob (format: kiln_blob.h) and checking it against the model.
 *
 * The blob is untrusted input: the trailer, the header, the entry table, every name, offset
 * and size are checked (overflow-safe) before anything is dereferenced, and each tensor is
 * then compared with kiln_model.tensors[]; entries past them (the tokenizer) are checked for
 * bounds and size too; krt_blob_verify recomputes the checksums (PROG --verify), which a
 * start does not (a pass over every byte). Any problem ends in one clear message: on
 * standard error for a program, into the caller's buffer for the C library (krt_say), which
 * also opens a blob already in memory (the one embedded in libNAME.a).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_internal.h"
#include "tokenizer.h"

static void blob_error(const krt_say *say, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const char *file = say->file ? say->file : "", *colon = say->file ? ": " : "";
    if (say->err) {            /* the C library: the message is the caller's to show */
        int n = snprintf(say->err, say->errlen, "weight blob: %s%s", file, colon);
        if (n >= 0 && (size_t)n < say->errlen)
            vsnprintf(say->err + n, say->errlen - (size_t)n, fmt, ap);
    } else {
        fprintf(stderr, "%s: error: weight blob: %s%s", say->prog, file, colon);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    va_end(ap);
}

static int read_at(int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r, n -= (size_t)r, off += r;
    }
    return 0;
}

/* Locate the blob in the open file: [*off, *off + *size). */
static int find_blob(int fd, const krt_say *say, const char *file, int embedded, uint64_t *off,
                     uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        blob_error(say, "%s: %s", file, strerror(errno));
        return -1;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    if (!embedded) {
        *off = 0, *size = fsize;
        return 0;
    }
    kblob_trailer tr;
    if (fsize < sizeof tr || read_at(fd, &tr, sizeof tr, (off_t)(fsize - sizeof tr)) < 0 ||
        memcmp(tr.magic, KBLOB_TRAILER_MAGIC, 8) != 0) {
        blob_error(say, "%s has no weight blob appended (no trailer at its end); "
                         "build it with kiln, or give one with --blob FILE", file);
        return -1;
    }
    uint64_t room = fsize - sizeof tr;
    if (tr.blob_offset % 4096 != 0 || tr.blob_offset > room || tr.blob_size > room - tr.blob_offset) {
        blob_error(say, "%s: trailer is corrupt (blob at offset %llu, %llu bytes, in a file of "
                         "%llu bytes)", file, (unsigned long long)tr.blob_offset,
                   (unsigned long long)tr.blob_size, (unsigned long long)fsize);
        return -1;
    }
    *off = tr.blob_offset, *size = tr.blob_size;
    return 0;
}

/* Check one blob entry against the model's description of tensor i. */
static int check_entry(const krt_say *say, const krt_model *m, int i, const unsigned char *base,
                       uint64_t size, const kblob_entry *e)
{
    const krt_tensor_desc *want = &m->tensors[i];
    const char *nm = want->name;
    if (e->name_offset >= size || !memchr(base + e->name_offset, 0, size - e->name_offset)) {
        blob_error(say, "tensor %d '%s': name out of range or not NUL-terminated", i, nm);
        return -1;
    }
    const char *have = (const char *)base + e->name_offset;
    if (strcmp(have, nm) != 0) {
        blob_error(say, "tensor %d '%s': the blob has '%.80s' here", i, nm, have);
        return -1;
    }
    if (e->offset % KBLOB_ALIGN != 0 || e->offset > size || e->nbytes > size - e->offset) {
        blob_error(say, "tensor %d '%s': data (offset %llu, %llu bytes) misaligned or outside "
                         "the blob (%llu bytes)", i, nm, (unsigned long long)e->offset,
                   (unsigned long long)e->nbytes, (unsigned long long)size);
        return -1;
    }
    const char *dt = kblob_dtype_name(e->dtype);
    if (!dt) {
        blob_error(say, "tensor %d '%s': unknown dtype code %u (this program reads f32, f16, "
                         "bf16, q8_0, q4_0)", i, nm, e->dtype);
        return -1;
    }
    if (e->rank != want->rank || e->rank > 4) {
        blob_error(say, "tensor %d '%s': rank %u, expected %u", i, nm, e->rank, want->rank);
        return -1;
    }
    for (uint32_t d = 0; d < e->rank; d++)
        if (e->dims[d] != want->dims[d]) {
            blob_error(say, "tensor %d '%s': dimension %u is %llu, expected %llu", i, nm, d,
                       (unsigned long long)e->dims[d], (unsigned long long)want->dims[d]);
            return -1;
        }
    /* the size must follow from the entry's own dtype and shape, block types included, before
     * the dtype is compared with the model's: a self-inconsistent entry is a corrupt blob */
    uint64_t bytes;
    if (kblob_tensor_bytes(e->dtype, e->rank, e->dims, &bytes) < 0) {
        uint64_t row = e->rank ? e->dims[e->rank - 1] : 1;
        if ((e->dtype == KBLOB_Q8_0 || e->dtype == KBLOB_Q4_0) && row % KBLOB_BLOCK != 0)
            blob_error(say, "tensor %d '%s': %s rows of %llu elements are not a whole number of "
                             "%u-element blocks", i, nm, dt, (unsigned long long)row, KBLOB_BLOCK);
        else
            blob_error(say, "tensor %d '%s': the byte size of its %s shape overflows", i, nm, dt);
        return -1;
    }
    if (e->nbytes != bytes) {
        blob_error(say, "tensor %d '%s': %llu bytes of data, expected %llu for %s", i, nm,
                   (unsigned long long)e->nbytes, (unsigned long long)bytes, dt);
        return -1;
    }
    const char *lay = kblob_layout_name(e->layout), *need = kblob_layout_name(want->layout);
    if (!lay || e->reserved != 0 || (e->layout == KBLOB_PANEL && e->rank != 2)) {
        blob_error(say, "tensor %d '%s': unknown layout code %u (or reserved field %u set)",
                   i, nm, e->layout, e->reserved);
        return -1;
    }
    if (e->layout != want->layout) {
        blob_error(say, "tensor %d '%s': layout %s, the program expects %s", i, nm, lay,
                   need ? need : "an unknown layout");
        return -1;
    }
    if (e->dtype != want->dtype) {
        const char *wn = kblob_dtype_name(want->dtype);
        blob_error(say, "tensor %d '%s': dtype %s, the program expects %s", i, nm, dt,
                   wn ? wn : "an unknown dtype");
        return -1;
    }
    return 0;
}

/* An entry past the model's tensors (kiln_blob.h): within the blob, of a known dtype and the
 * size its shape gives; the tokenizer's is kept in b. */
static int check_extra(const krt_say *say, uint32_t i, const unsigned char *base, uint64_t size,
                       const kblob_entry *e, krt_blob *b)
{
    uint64_t bytes;
    if (e->name_offset >= size || !memchr(base + e->name_offset, 0, size - e->name_offset)) {
        blob_error(say, "entry %u: name out of range or not NUL-terminated", i);
        return -1;
    }
    const char *nm = (const char *)base + e->name_offset;
    if (e->offset % KBLOB_ALIGN != 0 || e->offset > size || e->nbytes > size - e->offset ||
        e->rank > 4 || kblob_tensor_bytes(e->dtype, e->rank, e->dims, &bytes) < 0 ||
        bytes != e->nbytes) {
        blob_error(say, "entry %u '%.80s': data (offset %llu, %llu bytes, dtype code %u) "
                         "misaligned, outside the blob (%llu bytes) or not of its shape's size",
                   i, nm, (unsigned long long)e->offset, (unsigned long long)e->nbytes, e->dtype,
                   (unsigned long long)size);
        return -1;
    }
    if (!strcmp(nm, KBLOB_TOKENIZER)) {
        if (e->dtype != KBLOB_U8 || e->rank != 1 || b->tokenizer) {
            blob_error(say, "entry %u '%s': not one rank-1 u8 entry", i, nm);
            return -1;
        }
        b->tokenizer = base + e->offset;
        b->tokenizer_bytes = e->nbytes;
    }
    if (!strcmp(nm, KBLOB_CHECKSUMS)) {
        /* the last entry, a word for each entry before it, the metadata and itself */
        if (e->dtype != KBLOB_U8 || e->rank != 1 || i + 1 != b->n_entries ||
            e->nbytes != 8 * ((uint64_t)i + 2)) {
            blob_error(say, "entry %u '%s': not the last entry, of %u u64 words", i, nm, i + 2);
            return -1;
        }
        b->checksums = base + e->offset;
    }
    return 0;
}

static int check_blob(const krt_say *say, const char *file, const krt_model *m,
                      const unsigned char *base, uint64_t size, const void **w, krt_blob *b)
{
    kblob_header h;
    if (size < sizeof h) {
        blob_error(say, "%s: blob of %llu bytes is too small", file, (unsigned long long)size);
        return -1;
    }
    memcpy(&h, base, sizeof h);
    if (memcmp(h.magic, KBLOB_MAGIC, 8) != 0) {
        blob_error(say, "%s: bad magic (not a kiln weight blob)", file);
        return -1;
    }
    if (h.version != KBLOB_VERSION) {
        blob_error(say, "%s: version %u, this program reads version %u", file, h.version, KBLOB_VERSION);
        return -1;
    }
    if (h.total_size < sizeof h || h.total_size > size) {
        blob_error(say, "%s: blob claims %llu bytes, %llu present (truncated?)", file,
                   (unsigned long long)h.total_size, (unsigned long long)size);
        return -1;
    }
    size = h.total_size;
    if (h.table_offset % 8 != 0 || h.table_offset > size ||
        h.n_tensors > (size - h.table_offset) / sizeof(kblob_entry)) {
        blob_error(say, "%s: tensor table (offset %llu, %u entries) outside the blob", file,
                   (unsigned long long)h.table_offset, h.n_tensors);
        return -1;
    }
    if (h.n_tensors < (uint32_t)m->n_tensors) {
        blob_error(say, "%s: %u tensors, model '%s' expects %d", file, h.n_tensors, m->name,
                   m->n_tensors);
        return -1;
    }
    krt_say named = *say;      /* a tensor's messages name the file too */
    named.file = file;
    b->base = base;
    b->size = size;
    b->table = h.table_offset;
    b->n_entries = h.n_tensors;
    for (int i = 0; i < m->n_tensors; i++) {
        kblob_entry e;
        memcpy(&e, base + h.table_offset + (uint64_t)i * sizeof e, sizeof e);
        if (check_entry(&named, m, i, base, size, &e) < 0)
            return -1;
        w[i] = base + e.offset;
    }
    for (uint32_t i = (uint32_t)m->n_tensors; i < h.n_tensors; i++) {
        kblob_entry e;
        memcpy(&e, base + h.table_offset + (uint64_t)i * sizeof e, sizeof e);
        if (check_extra(&named, i, base, size, &e, b) < 0)
            return -1;
    }
    return 0;
}

int krt_blob_open(krt_blob *b, const char *prog, const char *blob_path, const krt_model *m)
{
    return krt_blob_open_at(b, &(krt_say){prog, NULL, 0, NULL}, blob_path, m);
}

int krt_blob_open_memory(krt_blob *b, const krt_say *say, const void *data, size_t size,
                         const krt_model *m)
{
    memset(b, 0, sizeof *b);   /* map stays NULL: the memory is the caller's */
    b->w = calloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1), sizeof *b->w);
    b->n = m->n_tensors;
    if (!b->w) {
        blob_error(say, "out of memory");
        return -1;
    }
    if (check_blob(say, "the embedded blob", m, data, size, b->w, b) < 0) {
        krt_blob_close(b);
        return -1;
    }
    return 0;
}

int krt_blob_open_at(krt_blob *b, const krt_say *say, const char *blob_path, const krt_model *m)
{
    memset(b, 0, sizeof *b);
    char self[4096];
    const char *file = blob_path;
    if (!file) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = 0;
        file = n > 0 ? self : "/proc/self/exe";
    }
    int fd = open(blob_path ? blob_path : "/proc/self/exe", O_RDONLY);
    if (fd < 0) {
        blob_error(say, "cannot open %s: %s", file, strerror(errno));
        return -1;
    }
    uint64_t off, size;
    if (find_blob(fd, say, file, blob_path == NULL, &off, &size) < 0) {
        close(fd);
        return -1;
    }
    if (size < sizeof(kblob_header) || size > SIZE_MAX / 2) {
        blob_error(say, "%s: blob of %llu bytes is too small or too large", file, (unsigned long long)size);
        close(fd);
        return -1;
    }
    long page = sysconf(_SC_PAGESIZE);
    uint64_t delta = off % (uint64_t)(page > 0 ? page : 4096);
    b->map_len = (size_t)(size + delta);
    b->map = mmap(NULL, b->map_len, PROT_READ, MAP_PRIVATE, fd, (off_t)(off - delta));
    close(fd);
    if (b->map == MAP_FAILED) {
        blob_error(say, "%s: cannot map %llu bytes: %s", file, (unsigned long long)size, strerror(errno));
        b->map = NULL;
        return -1;
    }
    b->w = calloc((size_t)(m->n_tensors > 0 ? m->n_tensors : 1), sizeof *b->w);
    b->n = m->n_tensors;
    if (!b->w || check_blob(say, file, m, (const unsigned char *)b->map + delta, size, b->w, b) < 0) {
        if (!b->w)
            blob_error(say, "out of memory");
        krt_blob_close(b);
        return -1;
    }
    return 0;
}

/* Transparent huge pages as the kernel offers them: "always" or "madvise" (1), "never" (0). */
static int thp_offered(void)
{
    char buf[128] = "";
    int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

/* Bytes of the region [p, p + len) in huge pages: AnonHugePages of its /proc/self/smaps
 * entry (0 when it cannot tell). */
static uint64_t huge_bytes_of(const void *p, size_t len)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[256];
    int in = 0;
    uint64_t kb = 0, total = 0;
    uintptr_t lo = (uintptr_t)p, hi = lo + len;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, z;
        if (sscanf(line, "%lx-%lx ", &a, &z) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a < hi && z > lo;
            continue;
        }
        if (in && sscanf(line, "AnonHugePages: %" SCNu64 " kB", &kb) == 1)
            total += kb * 1024;
    }
    fclose(f);
    return total;
}

/* MemAvailable of /proc/meminfo in bytes, or 0 when it cannot tell. */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    uint64_t kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %" SCNu64 " kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb * 1024;
}

#define HUGE_PAGE ((size_t)2 << 20)
#define HUGE_AUTO_MIN ((size_t)64 << 20)   /* smaller blobs: the copy costs more than it gives */

int krt_blob_huge(krt_blob *b, krt_huge mode)
{
    if (mode == KRT_HUGE_OFF || !b->map || !thp_offered())
        return 0;
    /* auto: a large blob, and room for the copy beside what the file pages take */
    if (mode == KRT_HUGE_AUTO && (b->map_len < HUGE_AUTO_MIN || 2 * (uint64_t)b->map_len > mem_available()))
        return 0;
    size_t len = (b->map_len + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    unsigned char *raw = mmap(NULL, len + HUGE_PAGE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return -1;
    /* 2 MiB-aligned: trim the slack before and after */
    unsigned char *at = (unsigned char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (at > raw)
        munmap(raw, (size_t)(at - raw));
    if (at + len < raw + len + HUGE_PAGE)
        munmap(at + len, (size_t)(raw + len + HUGE_PAGE - (at + len)));
    madvise(at, len, MADV_HUGEPAGE);
    memcpy(at, b->map, b->map_len);
    mprotect(at, len, PROT_READ);
    ptrdiff_t shift = at - (unsigned char *)b->map;
    for (int i = 0; i < b->n; i++)   /* the same offsets in the copy */
        b->w[i] = (const unsigned char *)b->w[i] + shift;
    if (b->tokenizer)
        b->tokenizer = (const unsigned char *)b->tokenizer + shift;
    if (b->checksums)
        b->checksums = (const unsigned char *)b->checksums + shift;
    b->base += shift;
    munmap(b->map, b->map_len);
    b->map = at;
    b->map_len = len;
    b->huge = 1;
    b->huge_bytes = huge_bytes_of(at, len);
    return 0;
}

int krt_blob_verify(const krt_blob *b, const krt_say *say, const char *file)
{
    krt_say named = *say;
    named.file = file;
    if (!b->checksums) {
        blob_error(&named, "no checksums (entry '%s'): built by an older kiln; rebuild it to "
                           "verify it", KBLOB_CHECKSUMS);
        return -1;
    }
    uint32_t k = b->n_entries - 1;
    uint64_t *sums = malloc(8 * ((size_t)k + 2)), first = 0;
    if (!sums) {
        blob_error(&named, "out of memory");
        return -1;
    }
    memcpy(sums, b->checksums, 8 * ((size_t)k + 2));
    int bad = 0;
    if (kblob_hash64(sums, 8 * ((uint64_t)k + 1)) != sums[k + 1]) {
        blob_error(&named, "entry %u '%s' is damaged (its own checksum does not match)", k,
                   KBLOB_CHECKSUMS);
        free(sums);
        return -1;
    }
    for (uint32_t i = 0; i < k && (!say->err || !bad); i++) {
        kblob_entry e;
        memcpy(&e, b->base + b->table + (uint64_t)i * sizeof e, sizeof e);
        if (i == 0)
            first = e.offset;
        if (kblob_hash64(b->base + e.offset, e.nbytes) != sums[i]) {
            blob_error(&named, "%s %u '%s' (blob bytes %llu .. %llu) is damaged: its checksum "
                               "does not match", i < (uint32_t)b->n ? "tensor" : "entry", i,
                       (const char *)b->base + e.name_offset, (unsigned long long)e.offset,
                       (unsigned long long)(e.offset + e.nbytes));
            bad++;
        }
    }
    if ((!say->err || !bad) && kblob_hash64(b->base, first) != sums[k]) {
        blob_error(&named, "the header, entry table or names (blob bytes 0 .. %llu) are "
                           "damaged: their checksum does not match", (unsigned long long)first);
        bad++;
    }
    free(sums);
    return bad ? -1 : 0;
}

void krt_blob_close(krt_blob *b)
{
    if (b->map)
        munmap(b->map, b->map_len);
    free(b->w);
    memset(b, 0, sizeof *b);
}

int krt_blob_tokenizer(const krt_blob *b, const krt_model *m, krt_tok **t, char *why,
                       size_t why_len)
{
    char err[256];
    *t = NULL;
    if (!b->tokenizer)
        return 0;
    if (!(*t = krt_tok_open(b->tokenizer, (size_t)b->tokenizer_bytes, err, sizeof err))) {
        snprintf(why, why_len, "weight blob: entry '%s': %s", KBLOB_TOKENIZER, err);
        return -1;
    }
    if (krt_tok_vocab(*t) > m->vocab) {
        snprintf(why, why_len, "weight blob: entry '%s': %d tokens, more than the model's "
                 "vocabulary of %lld", KBLOB_TOKENIZER, (int)krt_tok_vocab(*t),
                 (long long)m->vocab);
        krt_tok_free(*t);
        *t = NULL;
        return -1;
    }
    return 0;
}
