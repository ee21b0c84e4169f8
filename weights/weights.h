/* weights.h - checkpoint files: reading (safetensors, llama2.c v0 .bin, GGUF), det-weights v1,
 * writing det-weights checkpoints, and ggml's Q8_0 / Q4_0 block quantization.
 *
 * Files: detweights.c (the det-weights v1 generator), safetensors.c, llama2c.c, gguf.c (readers
 * and writers of each format), ckpt.c (format detection, lookup), quant.c (Q8_0 and Q4_0,
 * bit for bit as ggml's reference quantizers).
 *
 * Weight files are untrusted: every size, offset and count is checked before use, and every
 * problem is reported with diag_file_error(path, ...) naming the file and the place (tensor
 * name, byte offset) in it. Readers never crash and never read out of bounds.
 */
#ifndef KILN_WEIGHTS_H
#define KILN_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/limits.h"

/* CK_Q8_0 and CK_Q4_0 are ggml's block types (GGUF only): 32 weights per block along the
 * innermost (last) dimension, which is a multiple of 32; 34 and 18 bytes per block. */
typedef enum ckpt_dtype { CK_F32, CK_F16, CK_BF16, CK_Q8_0, CK_Q4_0 } ckpt_dtype;
typedef enum ckpt_format { CKPT_SAFETENSORS, CKPT_LLAMA2C, CKPT_GGUF } ckpt_format;

typedef struct ckpt_tensor {
    const char *name;          /* GGUF: the Hugging Face name when the file's name is known */
    const char *gguf_name;     /* GGUF: the name in the file; NULL for the other formats */
    ckpt_dtype dtype;
    int rank;
    int64_t shape[KILN_MAX_RANK];
    uint64_t offset;           /* from the start of the file, checked to lie inside it */
    uint64_t nbytes;
    int shard;                 /* a sharded folder: the file (ckpt.shards) holding it */
} ckpt_tensor;

/* The llama2.c v0 header: 7 int32. vocab < 0 means an untied classifier (lm_head stored). */
typedef struct llama2c_header {
    int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len;
} llama2c_header;

/* GGUF metadata (gguf.c). The value types, numbered as in the file. */
typedef enum gguf_type {
    GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_TYPE_COUNT
} gguf_type;

/* A string of the file, copied: s is NUL-terminated, but len counts its bytes (GGUF strings
 * may hold NULs). */
typedef struct gguf_str {
    const char *s;
    uint64_t len;
} gguf_str;

/* One metadata key/value. Scalars are decoded: unsigned integers in v.u, signed in v.i,
 * bools as 0 / 1 in v.u, f32 and f64 in v.f. An array holds v.arr.n items of v.arr.type
 * (never GGUF_ARRAY: nested arrays are refused); read them with gguf_item_*. */
typedef struct gguf_kv {
    const char *key;
    gguf_type type;
    uint64_t offset;           /* of the key in the file, for messages */
    union {
        uint64_t u;
        int64_t i;
        double f;
        gguf_str str;
        struct {
            gguf_type type;
            uint64_t n;
            const void *items; /* strings: gguf_str[n]; else the raw little-endian items */
        } arr;
    } v;
} gguf_kv;

typedef struct ckpt_gguf {
    uint32_t version;          /* 2 or 3 */
    uint32_t alignment;        /* general.alignment, or 32 */
    uint64_t data_offset;      /* the data section's first byte; tensor offsets are past it */
    gguf_kv *kv;               /* in file order; one allocation with the strings */
    int nkv;
} ckpt_gguf;

/* One file of a sharded checkpoint, mapped read-only once. */
typedef struct ckpt_shard {
    const char *path;
    const uint8_t *map;
    size_t size;
} ckpt_shard;

typedef struct ckpt {
    const char *path;
    ckpt_format format;
    const uint8_t *map;        /* the whole file, mapped read-only (NULL when sharded) */
    size_t size;
    ckpt_tensor *tensors;
    int n;
    llama2c_header l2c;        /* CKPT_LLAMA2C only */
    ckpt_gguf gguf;            /* CKPT_GGUF only */
    ckpt_shard *shards;        /* a sharded folder: its safetensors files (nshards > 0) */
    int nshards;
    /* A Hugging Face folder (hfdir.c): DIR/tokenizer.json when it exists, for the tokenizer
     * reader; NULL otherwise (and for a checkpoint file). */
    const char *tokenizer_json;
} ckpt;

/* Opens and validates a checkpoint. The format comes from the contents (a GGUF file starts
 * with "GGUF", a safetensors file with a u64 header length followed by '{'), else from the
 * extension (.gguf, .safetensors, .bin = llama2c). A directory is a Hugging Face folder
 * (hfdir_open). On any problem: reports it and returns NULL. */
ckpt *ckpt_open(const char *path);
/* 1 if the JSON file at path (config.json, an index, tokenizer.json) is within
 * KILN_MAX_JSON_BYTES or cannot be examined (its reader then says why); else 0, diagnosed.
 * Called before the file is loaded whole. */
int ckpt_json_size_ok(const char *path);
void ckpt_close(ckpt *c);
const ckpt_tensor *ckpt_find(const ckpt *c, const char *name);
/* Pointer to the tensor's bytes inside the mapping. */
const void *ckpt_data(const ckpt *c, const ckpt_tensor *t);
const char *ckpt_dtype_name(ckpt_dtype dt);   /* "F32", "F16", "BF16", "Q8_0", "Q4_0" */
/* The tensors of the llama2.c v0 layout for a header, in file order, Hugging Face names
 * (model.embed_tokens.weight, model.layers.{l}.self_attn.q_proj.weight, ...); the RoPE tables
 * are named "freq_cis_real" / "freq_cis_imag" and have offsets but are not model weights. */
int llama2c_layout(const llama2c_header *h, ckpt_tensor **out, int *n);

/* det-weights v1 (detweights.c): values start..start+n-1 of the tensor `name`. The role
 * (norm gain: center 1.0, scale 0.2; else 0.0, 0.1) comes from the name. */
void detweights_fill(float *out, const char *name, uint64_t start, uint64_t n, uint64_t seed);
int detweights_is_norm(const char *name);   /* ends in "norm.weight" */

/* Writers. Each writes det-weights v1 for the given tensors (generated in chunks, so memory
 * stays small), to a temporary file renamed into place at the end: no partial output on
 * error. Return 0, or -1 after reporting. */
typedef struct wspec {
    const char *name;
    int rank;
    int64_t shape[KILN_MAX_RANK];
} wspec;
/* dtype: the stored type; F16/BF16 values are the f32 det-weights rounded to nearest even. */
int safetensors_write_detweights(const char *path, const wspec *t, int n, uint64_t seed,
                                 ckpt_dtype dtype);
/* The spec's tensors must be exactly the layout's model tensors for `h` (names and shapes);
 * otherwise reports which one differs. */
int llama2c_write_detweights(const char *path, const llama2c_header *h, const wspec *t, int n,
                             uint64_t seed);
/* GGUF v3, general.architecture "llama", alignment 32, general.name = model, and the
 * llama.* hyperparameters of the spec's parameters present in `params` (dim ->
 * llama.embedding_length, hidden -> feed_forward_length, layers -> block_count, heads ->
 * attention.head_count, kv_heads -> attention.head_count_kv, ctx -> context_length, vocab ->
 * vocab_size, eps -> attention.layer_norm_rms_epsilon, rope_base -> rope.freq_base). Tensors
 * are named back to GGUF names (gguf_name_from_hf). Storage: `dtype` for tensors of rank >= 2
 * (Q8_0 / Q4_0: those whose last dimension is a multiple of 32; the others F32), F32 for
 * rank 1 (norm gains), as llama-quantize does. */
typedef struct gguf_param {
    const char *name;
    const char *text;          /* the value as the spec prints it: 288, 1e-05 */
} gguf_param;
int gguf_write_detweights(const char *path, const char *model, const gguf_param *params,
                          int nparams, const wspec *t, int n, uint64_t seed, ckpt_dtype dtype);

/* GGUF (gguf.c): versions 2 and 3, little-endian; tensors F32, F16, BF16, Q8_0 and Q4_0;
 * general.architecture "llama" only. Its tensors take their Hugging Face names
 * (token_embd.weight -> model.embed_tokens.weight, blk.N.attn_q.weight ->
 * model.layers.N.self_attn.q_proj.weight, ...: gguf_name_to_hf); ckpt_tensor.gguf_name keeps
 * the file's. Shapes are outermost first, as for the other formats (GGUF lists them
 * innermost first). Every metadata key is kept (ckpt.gguf.kv). */

/* The GGUF name of a Hugging Face tensor name and back, into out (size n); 1 if mapped, 0 if
 * the name is not one the map knows (copied unchanged), -1 if it does not fit. */
int gguf_name_to_hf(const char *gguf_name, char *out, size_t n);
int gguf_name_from_hf(const char *hf_name, char *out, size_t n);
const char *gguf_type_name(gguf_type t);      /* "u32", "string", ...; "?" if unknown */

/* Metadata lookups. The kv array (NULL, *n = 0 for a file that is not GGUF): */
const gguf_kv *ckpt_gguf_kv(const ckpt *c, int *n);
const gguf_kv *ckpt_gguf_find(const ckpt *c, const char *key);
/* Typed lookups: 1 with *out set, 0 when the key is absent, -1 when it holds another type.
 * _int takes every integer type (a u64 above INT64_MAX counts as another type), _float f32
 * and f64, _str a string, _array an array of items of `item` (GGUF_TYPE_COUNT: of any). */
int ckpt_gguf_int(const ckpt *c, const char *key, int64_t *out);
int ckpt_gguf_float(const ckpt *c, const char *key, double *out);
int ckpt_gguf_bool(const ckpt *c, const char *key, int *out);
int ckpt_gguf_str(const ckpt *c, const char *key, const gguf_str **out);
int ckpt_gguf_array(const ckpt *c, const char *key, gguf_type item, const gguf_kv **out);
/* The same on one value (kv non-NULL): 1, or -1 for another type. */
int gguf_kv_int(const gguf_kv *kv, int64_t *out);
int gguf_kv_float(const gguf_kv *kv, double *out);
/* Item i of an array: 1 with *out set, -1 if kv is not an array of that kind or i >= n. */
int gguf_item_int(const gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_item_float(const gguf_kv *kv, uint64_t i, double *out);
int gguf_item_str(const gguf_kv *kv, uint64_t i, const gguf_str **out);
/* Prints kv's value as `kiln inspect` shows it: `u32 6`, `string "llama"` (quoted, escaped,
 * cut after max_str bytes), `array[string] of 512: "<unk>", "<s>", ... (first 8)` (at most
 * max_items items). */
void gguf_print_value(FILE *out, const gguf_kv *kv, uint64_t max_items, size_t max_str);

/* quant.c: ggml's Q8_0 and Q4_0 blocks, bit for bit as ggml's reference quantizers
 * (quantize_row_q8_0_ref / _q4_0_ref). n must be a multiple of 32; blocks hold n/32 blocks.
 * Q8_0: d = amax/127, q = round(x/d) (halves away from zero), 34 bytes: f16 d, 32 int8.
 * Q4_0: d = m/-8 (m: the value of largest magnitude, the first one, with its sign),
 * q = min(15, trunc(x/d + 8.5)), 18 bytes: f16 d, then byte j = q[j] | q[j+16] << 4.
 * Both multiply by 1/d (0 when d is 0) and store d rounded to f16, nearest even. */
#define QUANT_BLOCK 32
#define Q8_0_BYTES 34
#define Q4_0_BYTES 18
void quant_q8_0_row(const float *x, void *blocks, int64_t n);
void quant_q4_0_row(const float *x, void *blocks, int64_t n);
/* value = f16 d * q (Q4_0: d * (q - 8)), exact in f32. */
void dequant_q8_0_row(const void *blocks, float *y, int64_t n);
void dequant_q4_0_row(const void *blocks, float *y, int64_t n);
/* Element j of a tensor of Q8_0 or Q4_0 blocks (rows of whole blocks, so the blocks of a
 * tensor are consecutive); 0 for another dtype. */
float dequant_at(ckpt_dtype dt, const void *blocks, uint64_t j);

/* hfconfig.c: a Hugging Face config.json, read fully or refused.
 *
 * hf_config_read offers every top-level key as a candidate parameter of its name: a scalar
 * (integers and booleans as written, reals in the fewest digits that read back, strings raw)
 * as HF_SCALAR, an array of scalars as HF_LIST (items joined "a,b,c"). The usual keys are also
 * offered under kiln's conventional names (hidden_size -> dim, intermediate_size -> hidden,
 * num_hidden_layers -> layers, num_attention_heads -> heads, num_key_value_heads -> kv_heads,
 * vocab_size -> vocab, max_position_embeddings -> ctx, rms_norm_eps -> eps, rope_theta ->
 * rope_base, tie_word_embeddings -> tied, ...; the table in hfconfig.c). origin names the file
 * and the key for messages: `config.json: key "rope_theta"`. Strings are interned.
 *
 * hf_config_check, once the spec's parameters are known, refuses (reporting the file and
 * each key) a key that changes the computation when the spec neither uses it nor has it at
 * its neutral value (rope_scaling: null, hidden_act: "silu", ...); with `verbose`, lists on
 * stderr the keys the spec does not use. 0, or -1 after reporting. */
typedef enum hf_shape { HF_SCALAR, HF_LIST } hf_shape;
typedef struct hf_param {
    const char *name;          /* the parameter it sets: the key, or kiln's name for it */
    const char *value;
    hf_shape shape;
    const char *key;           /* the key in the file */
    const char *origin;        /* "PATH: key \"KEY\"" */
} hf_param;
typedef struct hf_config hf_config;
typedef struct hf_spec {
    const char *const *names;  /* the spec's parameters (compile-time and run-time) */
    int nnames;
    int tied;                  /* its classifier is the embedding (no lm_head.weight) */
    int64_t ctx;               /* the positions the program takes; 0 if unknown */
} hf_spec;
hf_config *hf_config_read(const char *path);      /* NULL after reporting */
const hf_param *hf_config_params(const hf_config *c, int *n);
int hf_config_check(const hf_config *c, const hf_spec *s, int verbose);
void hf_config_free(hf_config *c);

/* gguf_hparams.c: a llama GGUF's hyperparameters as candidate spec parameters, in the
 * hf_param form of a config (origin: `PATH: key "llama.block_count"`): llama.embedding_length
 * -> dim, block_count -> layers, attention.head_count -> heads, attention.head_count_kv ->
 * kv_heads, feed_forward_length -> hidden, context_length -> ctx,
 * attention.layer_norm_rms_epsilon -> eps, rope.freq_base -> rope_base,
 * rope.dimension_count -> rotary_dim; vocab from token_embd.weight's rows (llama.vocab_size
 * and tokenizer.ggml.tokens must agree), tied = no output.weight. Types and ranges are
 * checked (errors name the file and the key). For another format: none. 0, or -1 after
 * reporting; *out is freed by free().
 * gguf_hparams_check, once the spec's parameters are known, refuses a key that changes the
 * computation when the spec has no parameter for it and its value is not the spec's own
 * (rope.dimension_count other than the head size, head_count_kv other than head_count,
 * rope.freq_base other than 10000, RoPE scaling, experts, ...). 0, or -1 after reporting. */
int gguf_hparams_read(const ckpt *c, hf_param **out, int *n);
int gguf_hparams_check(const ckpt *c, const hf_spec *s);

/* ---- Internal to the weights/ sources (not part of the public interface) ----
 * Parsers over a mapped file: on success *out is ONE allocation holding the tensor array and
 * the names (free(*out) releases both); the same holds for llama2c_layout's *out. */
int safetensors_parse(const char *path, const uint8_t *map, size_t size, ckpt_tensor **out,
                      int *n);
int llama2c_parse(const char *path, const uint8_t *map, size_t size, llama2c_header *h,
                  ckpt_tensor **out, int *n);
/* On success also fills *g (g->kv: one allocation, freed by free(g->kv)). */
int gguf_parse(const char *path, const uint8_t *map, size_t size, ckpt_gguf *g,
               ckpt_tensor **out, int *n);
/* Maps the whole regular file read-only (ckpt.c); NULL after reporting. */
const uint8_t *ckpt_map_file(const char *path, size_t *size);
/* hfdir.c: a Hugging Face folder: DIR/model.safetensors, or the shards that
 * DIR/model.safetensors.index.json maps each tensor to (each shard mapped once and checked
 * as a single file is; a shard missing, a tensor the index maps to a shard that lacks it,
 * a shard path outside the folder: refused, naming the file). NULL after reporting. */
ckpt *hfdir_open(const char *dir);
/* DIR/config.json when path is a folder (whether or not the file exists: the commands read
 * it as --config, and say when it is missing), else NULL. */
const char *hfdir_config(const char *path);
/* Checks a llama2.c header; reports against `path` unless it is NULL. 0 if valid, else -1. */
int llama2c_check_header(const char *path, const llama2c_header *h);

/* Output files (wfile.c, over base/outfile.c): a regular file is written to PATH.tmp.XXXXXX
 * and renamed into place by wfile_commit, a device or FIFO directly; wfile_abort (or a failing
 * commit) unlinks the temporary. Errors are reported. */
typedef struct wfile wfile;
wfile *wfile_open(const char *path);
int wfile_write(wfile *w, const void *p, size_t n);
int wfile_put_f32(wfile *w, const float *v, size_t n);        /* little-endian float32 */
int wfile_put_detweights(wfile *w, const char *name, uint64_t n, uint64_t seed);
/* The same values rounded to dtype (nearest even), little-endian: 4 or 2 bytes each; or
 * quantized to Q8_0 / Q4_0 blocks (n a multiple of 32, blocks of 32 consecutive values). */
int wfile_put_detweights_as(wfile *w, const char *name, uint64_t n, uint64_t seed,
                            ckpt_dtype dtype);
int wfile_commit(wfile *w);                                   /* closes, renames, frees */
void wfile_abort(wfile *w);                                   /* closes, unlinks, frees */

/* Overflow-checked size arithmetic: 0 on success, -1 on overflow. */
static inline int wmul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}
static inline int wadd_u64(uint64_t a, uint64_t b, uint64_t *r) {
    return __builtin_add_overflow(a, b, r) ? -1 : 0;
}

#endif
