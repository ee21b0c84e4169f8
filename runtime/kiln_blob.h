/* kiln_blob.h - the packed weight blob: written by the compiler (codegen/pack.c), mapped by
 * the program (runtime/blob.c). Plain structs, little-endian, no pointers.
 *
 * Layout of a blob (offsets from the blob's first byte):
 *   kblob_header                       at 0
 *   kblob_entry[n_tensors]             at header.table_offset
 *   names, NUL-terminated              at entry.name_offset
 *   tensor data, each KBLOB_ALIGN-aligned, at entry.offset, entry.nbytes long
 *
 * `kiln build` appends the blob to the executable it writes, at a page-aligned file offset,
 * followed by a kblob_trailer as the file's last bytes; the program maps itself
 * (/proc/self/exe) from there. `--blob FILE` maps a separate blob file instead.
 */
#ifndef KILN_BLOB_H
#define KILN_BLOB_H

#include <stdint.h>

#define KBLOB_MAGIC "KILNBLOB"          /* 8 bytes, no NUL */
#define KBLOB_TRAILER_MAGIC "KILNTAIL"  /* 8 bytes, no NUL */
#define KBLOB_VERSION 1u
#define KBLOB_ALIGN 64u

enum { KBLOB_F32 = 0, KBLOB_F16 = 1, KBLOB_BF16 = 2, KBLOB_Q8_0 = 8, KBLOB_Q4_0 = 9 };

typedef struct kblob_header {
    char magic[8];
    uint32_t version;
    uint32_t n_tensors;
    uint64_t table_offset;
    uint64_t total_size;          /* bytes of the whole blob */
} kblob_header;

typedef struct kblob_entry {
    uint64_t name_offset;
    uint64_t offset;              /* of the data, from the blob start, KBLOB_ALIGN-aligned */
    uint64_t nbytes;
    uint32_t dtype;
    uint32_t rank;
    uint64_t dims[4];
} kblob_entry;

typedef struct kblob_trailer {
    uint64_t blob_offset;         /* file offset of the blob, a multiple of 4096 */
    uint64_t blob_size;
    char magic[8];
} kblob_trailer;

#endif
