/* pack.h - writing the weight blob (format: runtime/kiln_blob.h).
 *
 * The blob is laid out as: header, entry table, names, then each tensor's data at a
 * KBLOB_ALIGN-aligned offset, the last entry the checksums of the others (KBLOB_CHECKSUMS,
 * added here: callers pass only their tensors). pack_append_blob appends it to a linked
 * executable (page-aligned, followed by a kblob_trailer); pack_write_blob writes it as a
 * file of its own.
 * Errors are reported on stderr as `PATH: error: ...`; the functions return 0 or -1.
 */
#ifndef KILN_PACK_H
#define KILN_PACK_H

#include <stdint.h>

typedef struct pack_tensor {
    const char *name;
    uint32_t dtype;            /* KBLOB_F32 ... */
    uint32_t rank;             /* <= 4 */
    uint64_t dims[4];
    const void *data;
    uint64_t nbytes;
    uint32_t layout;           /* KBLOB_ROWS, or KBLOB_PANEL (rank 2; data already in panels) */
} pack_tensor;

/* Append a blob of these tensors to the existing file `path`: pad the file to a multiple of
 * 4096, write the blob, then a kblob_trailer. On failure the file is cut back to its size. */
int pack_append_blob(const char *path, const pack_tensor *t, int n);

/* Write a standalone blob file (no trailer), through base/outfile.c: via a temporary file
 * renamed into place, or directly onto a device or FIFO. */
int pack_write_blob(const char *path, const pack_tensor *t, int n);

#endif
