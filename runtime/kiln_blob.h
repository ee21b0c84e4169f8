/* kiln_blob.h - the packed weight blob: written by the compiler (codegen/pack.c), mapped by
 * the program (runtime/blob.c). Plain structs, little-endian, no pointers.
 *
 * Layout of a blob (offsets from the blob's first byte):
 *   kblob_header                       at 0
 *   kblob_entry[n_tensors]             at header.table_offset
 *   names, NUL-terminated              at entry.name_offset
 *   tensor data, each KBLOB_ALIGN-aligned, at entry.offset, entry.nbytes long
 *
 * Entries past the model's tensors (n_tensors counts them too) hold what is not a weight,
 * found by name: "kiln.tokenizer" (KBLOB_TOKENIZER), dtype KBLOB_U8, rank 1, dims[0] its
 * bytes: the serialized tokenizer (runtime/tokenizer.c). A program checks every extra entry
 * as it checks a tensor (name, bounds, size) and skips one it does not know.
 * "kiln.checksums" (KBLOB_CHECKSUMS), dtype KBLOB_U8, rank 1, the last entry, index k:
 * k + 2 little-endian u64: kblob_hash64 of each entry's data before it (entry 0 .. k-1, in
 * table order), then of the blob's bytes [0, entry 0's offset) (header, table, names), then
 * of those k + 1 words. `PROG --verify` recomputes them (runtime/blob.c); a program does not
 * at start (a pass over every weight byte). A blob without it still reads.
 *
 * `kiln build` appends the blob to the executable it writes, at a page-aligned file offset,
 * followed by a kblob_trailer as the file's last bytes; the program maps itself
 * (/proc/self/exe) from there. `--blob FILE` maps a separate blob file instead.
 */
#ifndef KILN_BLOB_H
#define KILN_BLOB_H

#include <stddef.h>
#include <stdint.h>

#define KBLOB_MAGIC "KILNBLOB"          /* 8 bytes, no NUL */
#define KBLOB_TRAILER_MAGIC "KILNTAIL"  /* 8 bytes, no NUL */
#define KBLOB_VERSION 4u        /* 4: entries past the model's tensors, KBLOB_U8 */
#define KBLOB_ALIGN 64u

/* Storage types. F32, F16 (IEEE half) and BF16 hold one value per element. The block types
 * are GGUF's: 32 weights per block along a row; Q8_0 is an f16 scale and 32 int8 (34 bytes),
 * Q4_0 an f16 scale and 32 4-bit values (18 bytes). A row of a block type holds a whole
 * number of blocks. U8 is raw bytes (what is not a weight: the tokenizer). */
enum { KBLOB_F32 = 0, KBLOB_F16 = 1, KBLOB_BF16 = 2, KBLOB_Q8_0 = 8, KBLOB_Q4_0 = 9,
       KBLOB_U8 = 16 };
#define KBLOB_TOKENIZER "kiln.tokenizer"
#define KBLOB_CHECKSUMS "kiln.checksums"
#define KBLOB_BLOCK 32u

/* Layouts of a tensor's bytes. KBLOB_ROWS: row after row (rank 0..4, rows of the last
 * dimension). KBLOB_PANEL (2-D [rows, cols] only): the order the matrix kernels stream
 * (kernels.h: krt_linear), chosen by the compiler for weights that only matrix products,
 * embeddings and widening read (passes/wlayout.c). Rows go in panels of KBLOB_PANEL_ROWS;
 * panel p holds rows 16p .. 16p + w - 1, w = min(16, rows - 16p) (only the last panel is
 * narrower), starts at byte p * 16 * row_bytes and stores its rows column by column:
 *   f32, f16, bf16: element (16p + i, k) at (k * w + i) * elem;
 *   q8_0: block b (columns 32b .. 32b+31) at b * w * 34: the w rows' f16 scales (row i at
 *         2i), then 8 groups of w x 4 int8, group g holding row i's columns 32b + 4g .. +3
 *         at 2w + (g * w + i) * 4;
 *   q4_0: block b at b * w * 18: the w scales, then 4 groups of w x 4 bytes, group g holding
 *         row i's GGUF block bytes 4g .. 4g+3 (column 32b + 4g + j in the low nibble of byte
 *         j, column 32b + 16 + 4g + j in the high nibble) at 2w + (g * w + i) * 4.
 * So one load of 4 bytes x 16 rows feeds an 8-bit dot product of 16 rows at once, and a
 * panel is one stream. A tensor takes the same number of bytes in either layout. */
enum { KBLOB_ROWS = 0, KBLOB_PANEL = 1 };
#define KBLOB_PANEL_ROWS 16

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
    uint32_t layout;              /* KBLOB_ROWS or KBLOB_PANEL */
    uint32_t reserved;            /* 0 */
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
    case KBLOB_U8: return "u8";
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
    case KBLOB_U8: per = 1, elems = 1; break;
    case KBLOB_Q8_0: per = 34, elems = KBLOB_BLOCK; break;
    case KBLOB_Q4_0: per = 18, elems = KBLOB_BLOCK; break;
    default: return -1;
    }
    if (n % elems != 0 || __builtin_mul_overflow(n / elems, per, bytes))
        return -1;
    return 0;
}

/* The layout's lower-case name ("rows", "panel"), or NULL for an unknown code. */
static inline const char *kblob_layout_name(uint32_t layout)
{
    return layout == KBLOB_ROWS ? "rows" : layout == KBLOB_PANEL ? "panel" : NULL;
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

/* kblob_hash64: the 64-bit checksum of n bytes. Four lanes take the 8-byte little-endian
 * words in turn (word i to lane i % 4), each lane h = (h ^ w) * K; h ^= h >> 29 (both steps
 * invertible, so one changed word always changes its lane); the last 1..7 bytes, zero-padded,
 * are one more word; the lanes and n are then mixed and finished with splitmix64's
 * finalizer. Not cryptographic: it finds damage, not tampering. Four independent chains
 * keep it at memory speed (several GB/s). */
#define KBLOB_HASH_K 0x9e3779b97f4a7c15ull
static inline uint64_t kblob_hash_step(uint64_t h, uint64_t w)
{
    h = (h ^ w) * KBLOB_HASH_K;
    return h ^ (h >> 29);
}

static inline uint64_t kblob_hash64(const void *data, uint64_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h[4] = {0x243f6a8885a308d3ull, 0x13198a2e03707344ull, 0xa4093822299f31d0ull,
                     0x082efa98ec4e6c89ull}, w;
    uint64_t words = n / 8, i = 0;
    for (; i + 4 <= words; i += 4)
        for (int l = 0; l < 4; l++) {
            __builtin_memcpy(&w, p + 8 * (i + (uint64_t)l), 8);
            h[l] = kblob_hash_step(h[l], w);
        }
    for (; i < words; i++) {
        __builtin_memcpy(&w, p + 8 * i, 8);
        h[i % 4] = kblob_hash_step(h[i % 4], w);
    }
    if (n % 8) {
        w = 0;
        __builtin_memcpy(&w, p + 8 * words, n % 8);
        h[words % 4] = kblob_hash_step(h[words % 4], w);
    }
    uint64_t r = n;
    for (int l = 0; l < 4; l++)
        r = kblob_hash_step(r, h[l]);
    r ^= r >> 30, r *= 0xbf58476d1ce4e5b9ull;
    r ^= r >> 27, r *= 0x94d049bb133111ebull;
    return r ^ (r >> 31);
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

/* ---- the panel layout (KBLOB_PANEL above) ---- */

/* The byte offset, in a panel-layout tensor of `rows` rows whose rows are row_bytes long,
 * of the start of row r's panel, and the panel's width w and r's index i in it. */
static inline uint64_t kblob_panel_at(uint64_t rows, uint64_t row_bytes, uint64_t r,
                                      uint64_t *w, uint64_t *i)
{
    uint64_t p = r / KBLOB_PANEL_ROWS, left = rows - p * KBLOB_PANEL_ROWS;
    *w = left < KBLOB_PANEL_ROWS ? left : KBLOB_PANEL_ROWS;
    *i = r % KBLOB_PANEL_ROWS;
    return p * KBLOB_PANEL_ROWS * row_bytes;
}

/* Row r, columns c0 .. c0+n-1, of a [rows, cols] tensor of dtype in either layout, as f32
 * (exactly: block types are d * q). c0 and n are multiples of 32 for the block types. */
static inline void kblob_read_row(float *y, const void *tensor, uint32_t dtype, uint32_t layout,
                                  uint64_t rows, uint64_t cols, uint64_t r, uint64_t c0,
                                  uint64_t n)
{
    const unsigned char *t = (const unsigned char *)tensor;
    uint64_t row_bytes = 0, w = 1, i = 0, base;
    kblob_row_bytes(dtype, cols, &row_bytes);
    if (layout == KBLOB_PANEL)
        base = kblob_panel_at(rows, row_bytes, r, &w, &i);
    else
        base = r * row_bytes;
    for (uint64_t j = 0; j < n; j++) {
        uint64_t k = c0 + j, e = layout == KBLOB_PANEL ? k * w + i : k;
        uint16_t h;
        float f;
        switch (dtype) {
        case KBLOB_F32:
            __builtin_memcpy(&f, t + base + 4 * e, 4);
            y[j] = f;
            break;
        case KBLOB_F16: case KBLOB_BF16:
            __builtin_memcpy(&h, t + base + 2 * e, 2);
            y[j] = dtype == KBLOB_F16 ? kblob_f16_to_f32(h) : kblob_bf16_to_f32(h);
            break;
        case KBLOB_Q8_0: case KBLOB_Q4_0: {
            uint64_t b = k / KBLOB_BLOCK, kk = k % KBLOB_BLOCK;
            uint64_t bb = dtype == KBLOB_Q8_0 ? 34 : 18;
            const unsigned char *blk = t + base + b * w * bb, *q;
            int v;
            if (layout == KBLOB_PANEL) {
                __builtin_memcpy(&h, blk + 2 * i, 2);
                uint64_t g = dtype == KBLOB_Q8_0 ? kk / 4 : (kk % 16) / 4;
                q = blk + 2 * w + (g * w + i) * 4 + kk % 4;
            } else {
                __builtin_memcpy(&h, blk, 2);
                q = blk + 2 + (dtype == KBLOB_Q8_0 ? kk : kk % 16);
            }
            if (dtype == KBLOB_Q8_0)
                v = (signed char)*q;
            else
                v = (kk < 16 ? (*q & 15) : (*q >> 4)) - 8;
            y[j] = kblob_f16_to_f32(h) * (float)v;
            break;
        }
        default:
            y[j] = 0.0f;
        }
    }
}

/* A [rows, cols] tensor of dtype from the rows layout (src) to the panel layout (dst, the
 * same size): what the compiler's packer does. 0, or -1 for a dtype without a panel form or
 * a shape its rows do not fit. */
static inline int kblob_to_panel(void *dst, const void *src, uint32_t dtype, uint64_t rows,
                                 uint64_t cols)
{
    unsigned char *d = (unsigned char *)dst;
    const unsigned char *s = (const unsigned char *)src;
    uint64_t rb, elem = dtype == KBLOB_F32 ? 4 : 2;
    if (kblob_row_bytes(dtype, cols, &rb) < 0)
        return -1;
    for (uint64_t p0 = 0; p0 < rows; p0 += KBLOB_PANEL_ROWS) {
        uint64_t w = rows - p0 < KBLOB_PANEL_ROWS ? rows - p0 : KBLOB_PANEL_ROWS;
        unsigned char *pd = d + p0 * rb;
        const unsigned char *ps = s + p0 * rb;
        if (dtype == KBLOB_F32 || dtype == KBLOB_F16 || dtype == KBLOB_BF16) {
            for (uint64_t k = 0; k < cols; k++)
                for (uint64_t i = 0; i < w; i++)
                    __builtin_memcpy(pd + (k * w + i) * elem, ps + i * rb + k * elem, elem);
            continue;
        }
        if (dtype != KBLOB_Q8_0 && dtype != KBLOB_Q4_0)
            return -1;
        uint64_t bb = dtype == KBLOB_Q8_0 ? 34 : 18, groups = dtype == KBLOB_Q8_0 ? 8 : 4;
        for (uint64_t b = 0; b < cols / KBLOB_BLOCK; b++) {
            unsigned char *blk = pd + b * w * bb;
            for (uint64_t i = 0; i < w; i++) {
                const unsigned char *sb = ps + i * rb + b * bb;   /* scale, then the values */
                __builtin_memcpy(blk + 2 * i, sb, 2);
                for (uint64_t g = 0; g < groups; g++)
                    __builtin_memcpy(blk + 2 * w + (g * w + i) * 4, sb + 2 + 4 * g, 4);
            }
        }
    }
    return 0;
}

#endif
