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
#define KBLOB_VERSION 2u
#define KBLOB_ALIGN 64u

/* Storage types. F32, F16 (IEEE half) and BF16 hold one value per element. The block types
 * are GGUF's: 32 weights per block along a row; Q8_0 is an f16 scale and 32 int8 (34 bytes),
 * Q4_0 an f16 scale and 32 4-bit values (18 bytes). A row of a block type holds a whole
 * number of blocks. */
enum { KBLOB_F32 = 0, KBLOB_F16 = 1, KBLOB_BF16 = 2, KBLOB_Q8_0 = 8, KBLOB_Q4_0 = 9 };
#define KBLOB_BLOCK 32u

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

/* The dtype's lower-case name ("f32", "q8_0"), or NULL for an unknown code. */
static inline const char *kblob_dtype_name(uint32_t dtype)
{
    switch (dtype) {
    case KBLOB_F32: return "f32";
    case KBLOB_F16: return "f16";
    case KBLOB_BF16: return "bf16";
    case KBLOB_Q8_0: return "q8_0";
    case KBLOB_Q4_0: return "q4_0";
    default: return NULL;
    }
}

/* Bytes of one row of n elements of dtype into *bytes; -1 for an unknown dtype, a row that
 * is not a whole number of blocks, or overflow. */
static inline int kblob_row_bytes(uint32_t dtype, uint64_t n, uint64_t *bytes)
{
    uint64_t per, elems;
    switch (dtype) {
    case KBLOB_F32: per = 4, elems = 1; break;
    case KBLOB_F16: case KBLOB_BF16: per = 2, elems = 1; break;
    case KBLOB_Q8_0: per = 34, elems = KBLOB_BLOCK; break;
    case KBLOB_Q4_0: per = 18, elems = KBLOB_BLOCK; break;
    default: return -1;
    }
    if (n % elems != 0 || __builtin_mul_overflow(n / elems, per, bytes))
        return -1;
    return 0;
}

/* Bytes of a whole tensor (rank 0..4, rows of its last dimension); -1 as above. */
static inline int kblob_tensor_bytes(uint32_t dtype, uint32_t rank, const uint64_t *dims,
                                     uint64_t *bytes)
{
    uint64_t rows = 1, row;
    if (rank > 4)
        return -1;
    for (uint32_t d = 0; d + 1 < rank; d++)
        if (__builtin_mul_overflow(rows, dims[d], &rows))
            return -1;
    if (kblob_row_bytes(dtype, rank ? dims[rank - 1] : 1, &row) < 0)
        return -1;
    return __builtin_mul_overflow(rows, row, bytes) ? -1 : 0;
}

/* ---- element conversions (exact widening; narrowing rounds to nearest even) ---- */

static inline float kblob_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0 && man == 0) {
        bits = sign;
    } else if (exp == 0) {           /* subnormal: normalize */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 1024));
        bits = sign | (uint32_t)(112 - e) << 23 | (man & 1023) << 13;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

static inline float kblob_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

static inline uint16_t kblob_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u)          /* NaN stays a (quiet) NaN */
        return (uint16_t)((v.u >> 16) | 0x40);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1)) >> 16);
}

static inline uint16_t kblob_f32_to_f16(float f)
{
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000u, a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);           /* NaN */
    if (a >= 0x477ff000u)                            /* rounds past 65504: infinity */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {                           /* below 2^-14: subnormal or zero */
        if (a < 0x33000000u)
            return (uint16_t)sign;
        uint32_t man = (a & 0x7fffffu) | 0x800000u, shift = 126 - (a >> 23);
        uint32_t half = man >> shift, rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = a - 0x38000000u;                    /* rebias the exponent: 127 -> 15 */
    r += 0xfffu + ((r >> 13) & 1);
    return (uint16_t)(sign | (r >> 13));
}

#endif
