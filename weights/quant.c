/* quant.c - ggml's Q8_0 and Q4_0 block formats: quantizing rows of f32 and reading them back.
 *
 * The quantizers give the bytes of ggml's reference quantizers (quantize_row_q8_0_ref and
 * quantize_row_q4_0_ref, which llama-quantize uses), so a GGUF file kiln writes holds what
 * llama.cpp would have made of the same values. That fixes every rounding: the scale d is
 * computed in f32 and stored as f16 (nearest even), the values are multiplied by 1/d computed
 * in f32 from the unrounded d, Q8_0 rounds halves away from zero (roundf), Q4_0 adds 8.5 and
 * truncates. Each product is its own statement so that no compiler fuses it with the add.
 */
#include <math.h>
#include <string.h>

#include "weights.h"
#include "../runtime/kiln_blob.h"

static void put_f16(unsigned char *b, float d) {
    uint16_t h = kblob_f32_to_f16(d);
    b[0] = (unsigned char)h, b[1] = (unsigned char)(h >> 8);
}

static float get_f16(const unsigned char *b) {
    return kblob_f16_to_f32((uint16_t)(b[0] | b[1] << 8));
}

void quant_q8_0_row(const float *x, void *blocks, int64_t n) {
    unsigned char *b = blocks;
    for (int64_t i = 0; i < n / QUANT_BLOCK; i++, x += QUANT_BLOCK, b += Q8_0_BYTES) {
        float amax = 0.0f;
        for (int j = 0; j < QUANT_BLOCK; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < QUANT_BLOCK; j++) {
            float v = x[j] * id;
            float r = roundf(v);
            /* |r| <= 127 for finite input; the tests keep NaN and infinity defined */
            int q = r >= 127.0f ? 127 : r <= -127.0f ? -127 : r == r ? (int)r : 0;
            b[2 + j] = (unsigned char)(int8_t)q;
        }
    }
}

/* trunc(v + 8.5) capped at 15: x/d lies in [-8, 8] up to rounding, so this is 0..15. */
static unsigned q4_level(float v) {
    float s = v + 8.5f;
    return s >= 15.0f ? 15u : s > 0.0f ? (unsigned)s : 0u;
}

void quant_q4_0_row(const float *x, void *blocks, int64_t n) {
    unsigned char *b = blocks;
    for (int64_t i = 0; i < n / QUANT_BLOCK; i++, x += QUANT_BLOCK, b += Q4_0_BYTES) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QUANT_BLOCK; j++)   /* strictly larger: the first of equals wins */
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        float d = max / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        put_f16(b, d);
        for (int j = 0; j < QUANT_BLOCK / 2; j++) {
            float lo = x[j] * id;
            float hi = x[j + QUANT_BLOCK / 2] * id;
            b[2 + j] = (unsigned char)(q4_level(lo) | q4_level(hi) << 4);
        }
    }
}

void dequant_q8_0_row(const void *blocks, float *y, int64_t n) {
    const unsigned char *b = blocks;
    for (int64_t i = 0; i < n / QUANT_BLOCK; i++, y += QUANT_BLOCK, b += Q8_0_BYTES) {
        float d = get_f16(b);
        for (int j = 0; j < QUANT_BLOCK; j++) y[j] = (float)(int8_t)b[2 + j] * d;
    }
}

void dequant_q4_0_row(const void *blocks, float *y, int64_t n) {
    const unsigned char *b = blocks;
    for (int64_t i = 0; i < n / QUANT_BLOCK; i++, y += QUANT_BLOCK, b += Q4_0_BYTES) {
        float d = get_f16(b);
        for (int j = 0; j < QUANT_BLOCK / 2; j++) {
            y[j] = (float)((int)(b[2 + j] & 15) - 8) * d;
            y[j + QUANT_BLOCK / 2] = (float)((int)(b[2 + j] >> 4) - 8) * d;
        }
    }
}

float dequant_at(ckpt_dtype dt, const void *blocks, uint64_t j) {
    const unsigned char *b = blocks;
    uint64_t blk = j / QUANT_BLOCK, k = j % QUANT_BLOCK;
    if (dt == CK_Q8_0) {
        b += blk * Q8_0_BYTES;
        return (float)(int8_t)b[2 + k] * get_f16(b);
    }
    if (dt == CK_Q4_0) {
        b += blk * Q4_0_BYTES;
        unsigned byte = b[2 + k % (QUANT_BLOCK / 2)];
        unsigned q = k < QUANT_BLOCK / 2 ? byte & 15 : byte >> 4;
        return (float)((int)q - 8) * get_f16(b);
    }
    return 0.0f;
}
