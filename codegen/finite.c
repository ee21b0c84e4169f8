/* finite.c - no NaN or infinity goes into a blob unnoticed.
 *
 * A checkpoint full of NaN used to build a program that printed token 0 forever. The bytes
 * bind_weights is about to pack (after conversion and quantization, so that a finite f32
 * that overflows f16 when narrowed counts too) are scanned once: f32, f16 and bf16 values
 * whose exponent is all ones, the f16 scale of every q8_0 / q4_0 block (and the f32 values a
 * block was quantized from, which the quantizer would turn into finite garbage). The scan is
 * a branch-free OR the compiler vectorizes; they are counted and the first bad index found
 * only when it says there are some. Each tensor that has any is an error at its declaration
 * (its spec name, its checkpoint name, the first index as [i, j], the value, and why when
 * conversion made it), unless --allow-nonfinite, which packs them and warns once with the
 * totals.
 */
#include <math.h>
#include <string.h>
#include <time.h>

#include "codegen.h"
#include "../runtime/kiln_blob.h"

static int allow;              /* --allow-nonfinite */
static uint64_t total_values;  /* over this build, for the one warning */
static int total_tensors;
static const ir_tensor *first_tensor;
static char first_at[512];
static double scan_seconds;
static uint64_t scan_bytes;

void finite_allow(int on) { allow = on; }

/* Whether the bits of a value of dtype are a NaN or an infinity: an exponent of all ones. */
#define F32_BAD(b) (((b) & 0x7f800000u) == 0x7f800000u)
#define F16_BAD(h) (((h) & 0x7c00u) == 0x7c00u)

/* Whether any of n f32 bit patterns, or of n 16-bit ones, has its exponent (under mask) all
 * ones. (x & mask) + the mask's lowest bit carries into the top bit exactly then, so an OR
 * of those sums, with no comparison, says it; in runs of 64 (a fixed count: gcc -O2
 * vectorizes only such loops) a clean tensor costs one streaming read. */
static int any_f32(const unsigned char *d, uint64_t n)
{
    uint32_t any = 0, b;
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (uint64_t k = 0; k < 64; k++) {
            memcpy(&b, d + 4 * (i + k), 4);
            any |= (b & 0x7f800000u) + 0x00800000u;
        }
    for (; i < n; i++) {
        memcpy(&b, d + 4 * i, 4);
        any |= (b & 0x7f800000u) + 0x00800000u;
    }
    return (any >> 31) != 0;
}

static int any_16(const unsigned char *d, uint64_t n, uint16_t mask)
{
    uint16_t any = 0, h, low = mask & (uint16_t)-mask;
    uint64_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (uint64_t k = 0; k < 64; k++) {
            memcpy(&h, d + 2 * (i + k), 2);
            any |= (uint16_t)((h & mask) + low);
        }
    for (; i < n; i++) {
        memcpy(&h, d + 2 * i, 2);
        any |= (uint16_t)((h & mask) + low);
    }
    return (any >> 15) != 0;
}

/* How many values (block types: blocks) of the rows-layout bytes are not finite; *first
 * gets the element index of the first (a block's first element). */
static uint64_t scan(const pack_tensor *p, uint64_t *first)
{
    const unsigned char *d = p->data;
    uint64_t n, count = 0;
    uint32_t b;
    uint16_t h, mask = p->dtype == KBLOB_F16 ? 0x7c00u : 0x7f80u;
    switch (p->dtype) {
    case KBLOB_F32:
        n = p->nbytes / 4;
        if (!any_f32(d, n))
            return 0;
        for (uint64_t i = 0; i < n; i++) {   /* the slow count: rare */
            memcpy(&b, d + 4 * i, 4);
            if (F32_BAD(b) && !count++)
                *first = i;
        }
        return count;
    case KBLOB_F16: case KBLOB_BF16:
        n = p->nbytes / 2;
        if (!any_16(d, n, mask))
            return 0;
        for (uint64_t i = 0; i < n; i++) {
            memcpy(&h, d + 2 * i, 2);
            if ((h & mask) == mask && !count++)
                *first = i;
        }
        return count;
    case KBLOB_Q8_0: case KBLOB_Q4_0: {
        uint64_t bb = p->dtype == KBLOB_Q8_0 ? 34 : 18;
        n = p->nbytes / bb;
        for (uint64_t i = 0; i < n; i++) {   /* one scale per 34 or 18 bytes: cheap anyway */
            memcpy(&h, d + bb * i, 2);
            if (F16_BAD(h) && !count++)
                *first = i * KBLOB_BLOCK;
        }
        return count;
    }
    default:
        return 0;
    }
}

/* "[3, 17]": element j of p's shape. */
static void index_text(const pack_tensor *p, uint64_t j, char *buf, size_t size)
{
    uint64_t idx[4] = {0};
    for (int d = (int)p->rank - 1; d >= 0; d--) {
        idx[d] = p->dims[d] ? j % p->dims[d] : 0;
        j = p->dims[d] ? j / p->dims[d] : 0;
    }
    size_t n = (size_t)snprintf(buf, size, "[");
    for (uint32_t d = 0; d < p->rank && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "%s%llu", d ? ", " : "",
                              (unsigned long long)idx[d]);
    if (n < size)
        snprintf(buf + n, size - n, "]");
}

/* The stored value of element j (a block type: its block's scale) as f32. */
static float stored_at(const pack_tensor *p, uint64_t j)
{
    const unsigned char *d = p->data;
    uint16_t h;
    float f;
    switch (p->dtype) {
    case KBLOB_F32: memcpy(&f, d + 4 * j, 4); return f;
    case KBLOB_F16: memcpy(&h, d + 2 * j, 2); return kblob_f16_to_f32(h);
    case KBLOB_BF16: memcpy(&h, d + 2 * j, 2); return kblob_bf16_to_f32(h);
    default:
        memcpy(&h, d + (j / KBLOB_BLOCK) * (p->dtype == KBLOB_Q8_0 ? 34 : 18), 2);
        return kblob_f16_to_f32(h);
    }
}

/* The checkpoint tensor and index that element (a0, a1) of recipe r comes from (a0 along the
 * first dimension, a1 the column, 0 for a vector): through stacks, cuts, transposes and
 * column scales (fold-gain: the weight's element, scaled); NULL through a product, which
 * mixes a whole column. */
static const ir_recipe *recipe_leaf(const ir_recipe *r, int64_t *a0, int64_t *a1)
{
    for (;;) {
        int64_t off = 0, t;
        switch (r->op) {
        case RC_LOAD:
            return r;
        case RC_CONCAT:
            for (int k = 0; k < r->nsrc; k++) {
                if (*a0 < off + r->src[k]->type.dim[0]) {
                    *a0 -= off;
                    r = r->src[k];
                    break;
                }
                off += r->src[k]->type.dim[0];
            }
            if (r->op == RC_CONCAT)
                return NULL;
            continue;
        case RC_ROWS: case RC_COLS: {
            int64_t *a = r->op == RC_ROWS ? a0 : a1;
            for (int k = 0; k < r->nrange; k++) {
                int64_t len = r->range[2 * k + 1] - r->range[2 * k];
                if (*a < off + len) {
                    *a = r->range[2 * k] + (*a - off);
                    break;
                }
                off += len;
            }
            r = r->src[0];
            continue;
        }
        case RC_TRANSPOSE:
            t = *a0, *a0 = *a1, *a1 = t;
            r = r->src[0];
            continue;
        case RC_SCALE_COLS:
            r = r->src[0];
            continue;
        default:
            return NULL;
        }
    }
}

/* For a tensor the packer computed (a recipe): " (from \"NAME\" [i, j])", the checkpoint
 * tensor element j comes from; "" otherwise. */
static void leaf_text(const ir_tensor *t, const pack_tensor *p, uint64_t j, char *buf,
                      size_t size)
{
    buf[0] = 0;
    if (!t->recipe)
        return;
    int64_t cols = p->rank == 2 ? (int64_t)p->dims[1] : 1;
    int64_t a0 = (int64_t)j / cols, a1 = p->rank == 2 ? (int64_t)j % cols : 0;
    const ir_recipe *leaf = recipe_leaf(t->recipe, &a0, &a1);
    if (!leaf)
        return;
    if (leaf->type.rank == 2)
        snprintf(buf, size, " (from \"%s\" [%lld, %lld])", leaf->name, (long long)a0,
                 (long long)a1);
    else
        snprintf(buf, size, " (from \"%s\" [%lld])", leaf->name, (long long)a0);
}

static const char *value_name(float v) { return isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf"; }

/* Why a converted value is not finite when what it came from was: "" when it was not. */
static void cause_text(const pack_tensor *p, const bind_src *src, uint64_t j, char *buf,
                       size_t size)
{
    buf[0] = 0;
    if (!src->f && !src->ck)   /* stored as the checkpoint holds it */
        return;
    const char *dt = kblob_dtype_name(p->dtype);
    if (p->dtype == KBLOB_Q8_0 || p->dtype == KBLOB_Q4_0) {
        float amax = 0;
        for (uint64_t k = j; k < j + KBLOB_BLOCK; k++) {
            float v = fabsf(bind_src_at(src, k));
            if (!isfinite(v))
                return;
            amax = v > amax ? v : amax;
        }
        snprintf(buf, size, ": its finite values (largest |x| %g) give an f16 scale past "
                 "65504 when quantized to %s", (double)amax, dt);
        return;
    }
    float v = bind_src_at(src, j);
    if (isfinite(v))
        snprintf(buf, size, ": the finite value %g overflows %s when narrowed to it", (double)v,
                 dt);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Non-finite values among the f32 values a block type was quantized from: ggml's quantizer
 * skips a NaN when it takes the block's largest |x| and turns it into an arbitrary integer,
 * so the blocks come out finite and wrong. */
static uint64_t scan_source(const pack_tensor *p, const float *f, uint64_t *first)
{
    uint64_t n = 1, count = 0;
    for (uint32_t d = 0; d < p->rank; d++)
        n *= p->dims[d];
    if (!any_f32((const unsigned char *)f, n))
        return 0;
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(f[i]) && !count++)
            *first = i;
    return count;
}

int finite_check(const ir_tensor *t, const pack_tensor *p, const bind_src *src)
{
    uint64_t first = 0;
    double t0 = seconds();
    int block = p->dtype == KBLOB_Q8_0 || p->dtype == KBLOB_Q4_0, source = 0;
    uint64_t count = scan(p, &first);
    if (!count && block && src->f && (count = scan_source(p, src->f, &first)))
        source = 1;            /* what the blocks hold came from non-finite values */
    scan_seconds += seconds() - t0;
    scan_bytes += p->nbytes;
    if (!count)
        return 0;
    char at[512], why[160];
    index_text(p, first, at, 96);
    size_t len = strlen(at);
    leaf_text(t, p, first, at + len, sizeof at - len);
    if (source)
        snprintf(why, sizeof why, ", before quantization to %s (which would hide it in a finite "
                 "block)", kblob_dtype_name(p->dtype));
    else
        cause_text(p, src, first, why, sizeof why);
    if (allow) {
        if (!total_tensors++) {
            first_tensor = t;
            snprintf(first_at, sizeof first_at, "%s", at);
        }
        total_values += count;
        return 0;
    }
    char what[400];            /* the checkpoint's name, or that the packer computed it */
    if (t->recipe)
        snprintf(what, sizeof what, "%s, computed by the packer", kblob_dtype_name(p->dtype));
    else
        snprintf(what, sizeof what, "\"%s\", %s", t->name, kblob_dtype_name(p->dtype));
    diag_error(t->loc, "weight '%s' (%s) holds %llu non-finite %s%s: the first, %s, %s %s%s "
               "(--allow-nonfinite packs them anyway)", t->decl ? t->decl : t->name, what,
               (unsigned long long)count, block && !source ? "block scale" : "value",
               count == 1 ? "" : "s", value_name(source ? src->f[first] : stored_at(p, first)),
               block && !source ? "in the block at" : "at", at, why);
    return -1;
}

void finite_report(int verbose)
{
    if (verbose)
        fprintf(stderr, "kiln: checked %.1f MB of weights for NaN and Inf in %.3f s\n",
                (double)scan_bytes / 1e6, scan_seconds);
    if (total_tensors)
        diag_file_warning("kiln", "%llu non-finite weight values (or block scales) in %d "
                          "tensor%s, packed as they are (--allow-nonfinite); the first in '%s' "
                          "(\"%s\") at %s", (unsigned long long)total_values, total_tensors,
                          total_tensors == 1 ? "" : "s",
                          first_tensor->decl ? first_tensor->decl : first_tensor->name,
                          first_tensor->name, first_at);
    total_values = 0, total_tensors = 0, scan_seconds = 0, scan_bytes = 0;
}
