/* ops.h - the op table: the single source of truth for IR op names, arity, properties,
 * attributes and typing rules.
 *
 * X(name, arity, flags, attrs, rule, cexpr, doc)
 *   name   op name as printed in dumps and used as IR_<name>
 *   arity  number of value operands
 *   flags  OPF_* properties below
 *   attrs  attribute slots, in print order: "i:heads" an integer in iattr[k] (k counts the i:
 *          and t: slots), "t:tensor" a tensor reference (@N) in iattr[k], "f:base" the float
 *          fattr, "v:bases" the float vector fvec[0 .. nfvec-1], "s:mode" the string sattr.
 *          An optional slot has '?' for ':' ("i?heads", "s?layout"): it is printed only when
 *          set (an integer not 0, a string not NULL) and may be absent from a dump, so IR
 *          that never sets it prints as it did before the slot existed
 *   rule   the typing rule (ir/typing.c): computes the result type from the operand types and
 *          the attributes, or says why it cannot. The front end turns a failure into a caret
 *          diagnostic; the verifier checks every instruction's type against it.
 *   cexpr  for ops computed element by element (elementwise ops, select, accum_if), the C
 *          expression of one element over a, b, c (float); "" for the rest. e^x is
 *          krt_expf (runtime/kernels.h): plain float arithmetic, so a loop of it vectorizes
 *   doc    one line, shown by `kiln ops`
 *
 * Types (ir.h): a value of a token-dependent op has a leading token axis T (the tokens of
 * the block being run, 1 when decoding); weights, constants and KV caches do not. Shapes
 * below are per token. S is the cached positions. Row t of a block is at position pos0 + t.
 */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include <stddef.h>

enum {
    OPF_SOURCE = 1 << 0,   /* no operands: reads the tokens, a weight, a constant, a parameter */
    OPF_ELEMWISE = 1 << 1, /* elementwise over operands of one shape (scalars broadcast) */
    OPF_REDUCE = 1 << 2,   /* reduces each row to a scalar */
    OPF_EFFECT = 1 << 3,   /* has an effect besides its value: never removed, never reordered */
    OPF_STATE = 1 << 4,    /* owns state that lives across calls (the KV cache) */
    OPF_BOOL = 1 << 5,     /* result is bool (0/1) */
    OPF_NOVALUE = 1 << 6,  /* has no value (printed without "%N : type =") */
};

#define KILN_OPS(X)                                                                            \
    X(token, 0, OPF_SOURCE, "", rule_token, "", "the input tokens of the block: i32[T]")       \
    X(position, 0, OPF_SOURCE, "", rule_token, "",                                             \
      "the position of each token of the block, pos0 + t: i32[T]")                            \
    X(weight, 0, OPF_SOURCE, "t:tensor i:row i:col", rule_weight, "",                          \
      "a view of tensor @tensor from row `row`, column `col`; the shape is the type, the "     \
      "storage type the tensor's")                                                             \
    X(const, 0, OPF_SOURCE, "f:value", rule_const, "", "a scalar f32 constant")                \
    X(rtparam, 0, OPF_SOURCE, "i:index", rule_rtparam, "",                                     \
      "a run-time parameter, changeable with --set")                                          \
    X(zeros, 0, OPF_SOURCE, "", rule_zeros, "", "zeros of the given type (a guarded sum's start)") \
    X(widen, 1, 0, "", rule_widen, "", "a weight view read as f32 (for ops that read only f32)") \
    X(embed, 2, 0, "", rule_embed, "",                                                         \
      "row args[1][t] of the weight table args[0] [V, d], for each token -> [d]")             \
    X(linear, 2, 0, "s?act", rule_linear, "",                                                  \
      "x W^T: x [in] (each token), W [out, in] a weight in its storage type -> [out]; "       \
      "act=\"q8_0\": x rounded to 8-bit blocks first (q8_0/q4_0 weights)")                     \
    X(neg, 1, OPF_ELEMWISE, "", rule_elementwise, "-a", "negation")                            \
    X(exp, 1, OPF_ELEMWISE, "", rule_elementwise, "krt_expf(a)", "e^a")                            \
    X(sqrt, 1, OPF_ELEMWISE, "", rule_elementwise, "sqrtf(a)", "square root")                  \
    X(rsqrt, 1, OPF_ELEMWISE, "", rule_elementwise, "1.0f / sqrtf(a)", "reciprocal square root") \
    X(tanh, 1, OPF_ELEMWISE, "", rule_elementwise, "tanhf(a)", "hyperbolic tangent")           \
    X(sigmoid, 1, OPF_ELEMWISE, "", rule_elementwise, "1.0f / (1.0f + krt_expf(-a))",              \
      "logistic sigmoid")                                                                      \
    X(silu, 1, OPF_ELEMWISE, "", rule_elementwise, "a / (1.0f + krt_expf(-a))", "x * sigmoid(x)")  \
    X(gelu, 1, OPF_ELEMWISE, "", rule_elementwise,                                             \
      "0.5f * a * (1.0f + tanhf(0.7978845608f * (a + 0.044715f * a * a * a)))",               \
      "GELU, tanh approximation")                                                              \
    X(relu, 1, OPF_ELEMWISE, "", rule_elementwise, "(a > 0.0f ? a : 0.0f)", "max(a, 0)")       \
    X(erf, 1, OPF_ELEMWISE, "", rule_elementwise, "erff(a)",                                   \
      "the error function (exact GELU: x*(1+erf(x/sqrt2))/2)")                                \
    X(not, 1, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a == 0.0f ? 1.0f : 0.0f)",      \
      "logical not")                                                                           \
    X(add, 2, OPF_ELEMWISE, "", rule_elementwise, "a + b", "sum")                              \
    X(sub, 2, OPF_ELEMWISE, "", rule_elementwise, "a - b", "difference")                       \
    X(mul, 2, OPF_ELEMWISE, "", rule_elementwise, "a * b", "product")                          \
    X(div, 2, OPF_ELEMWISE, "", rule_elementwise, "a / b", "quotient")                         \
    X(max, 2, OPF_ELEMWISE, "", rule_elementwise, "(a > b ? a : b)", "larger of two")          \
    X(min, 2, OPF_ELEMWISE, "", rule_elementwise, "(a < b ? a : b)", "smaller of two")         \
    X(pow, 2, OPF_ELEMWISE, "", rule_elementwise, "powf(a, b)", "a to the power b")            \
    X(lt, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a < b ? 1.0f : 0.0f)", "a < b")  \
    X(gt, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a > b ? 1.0f : 0.0f)", "a > b")  \
    X(le, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a <= b ? 1.0f : 0.0f)", "a <= b") \
    X(ge, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a >= b ? 1.0f : 0.0f)", "a >= b") \
    X(eq, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a == b ? 1.0f : 0.0f)", "a == b") \
    X(ne, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise, "(a != b ? 1.0f : 0.0f)", "a != b") \
    X(and, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise,                                   \
      "((a != 0.0f && b != 0.0f) ? 1.0f : 0.0f)", "and")                                      \
    X(or, 2, OPF_ELEMWISE | OPF_BOOL, "", rule_elementwise,                                    \
      "((a != 0.0f || b != 0.0f) ? 1.0f : 0.0f)", "or")                                       \
    X(select, 3, OPF_ELEMWISE, "", rule_elementwise, "(a != 0.0f ? b : c)", "a ? b : c")       \
    X(sum, 1, OPF_REDUCE, "", rule_reduce, "", "sum of each row -> scalar")                    \
    X(mean, 1, OPF_REDUCE, "", rule_reduce, "", "mean of each row -> scalar")                  \
    X(amax, 1, OPF_REDUCE, "", rule_reduce, "", "largest element of each row -> scalar")       \
    X(count, 1, OPF_REDUCE, "", rule_reduce, "", "non-zero (true) elements of each row -> scalar") \
    X(dot, 2, OPF_REDUCE, "", rule_dot, "", "inner product of two vectors -> scalar")          \
    X(extract, 1, 0, "i:index", rule_extract, "", "element #index of a vector -> scalar")      \
    X(topk, 1, OPF_BOOL, "i:k", rule_topk, "",                                                 \
      "mask of the k largest elements of a vector (the lower index first on ties)")          \
    X(slice, 1, 0, "i:start i:len", rule_slice, "", "elements [start, start+len) of a vector") \
    X(concat, 2, 0, "", rule_concat, "", "two vectors end to end")                             \
    X(softmax, 1, 0, "", rule_softmax, "",                                                     \
      "softmax over the last dim; over the positions row t sees (0 .. pos0+t) when it is S")  \
    X(rope, 1, 0, "i:heads i:rot f:base s:mode", rule_rope, "",                                \
      "rotary embedding of row t at position pos0 + t, the first rot dims of each head; "     \
      "mode half or interleaved")                                                              \
    X(rope_heads, 1, 0, "i:heads i:rot v:bases s:mode", rule_rope_heads, "",                   \
      "rope with one base per head: head h turns by (pos0 + t) * bases[h]^(-2i/rot)")          \
    X(cache, 1, OPF_STATE | OPF_EFFECT, "i:capacity i?heads s?layout", rule_cache, "",         \
      "append the T rows of args[0] [w] at positions pos0 .. pos0+T-1 -> the cache [S, w], "   \
      "stored as its dtype (f32, f16, bf16); layout \"head\": [heads][S][w/heads]")            \
    X(attn_scores, 2, 0, "i:heads", rule_attn_scores, "",                                      \
      "q [H*dh] . cache rows [S, Hkv*dh] -> [H, S], row t over positions 0 .. pos0+t "         \
      "(GQA: head h reads kv head h/(H/Hkv))")                                                 \
    X(attn_apply, 2, 0, "i:kv_heads", rule_attn_apply, "",                                     \
      "probs [H, S] x cache [S, Hkv*dh] -> [H*dh], same positions and GQA mapping")           \
    X(attention, 3, 0, "i:heads i:kv_heads f:scale", rule_attention, "",                        \
      "fused causal attention of q [H*dh] over k, v caches [S, Hkv*dh]: softmax(q.k * scale) "  \
      "x v -> [H*dh], online softmax, no probabilities in memory")                            \
    X(accum_if, 3, 0, "", rule_accum_if, "(c != 0.0f ? a + b : a)",                            \
      "args[0] + args[1] where the scalar args[2] is true, else args[0] (guarded sums)")       \
    X(stat, 1, OPF_EFFECT | OPF_NOVALUE, "i:slot", rule_stat, "",                              \
      "accumulate a scalar (each token's) into run-time statistic #slot")                     \
    X(output, 1, OPF_EFFECT | OPF_NOVALUE, "", rule_output, "", "the logits [vocab] of each token")

typedef enum ir_op {
#define X(name, arity, flags, attrs, rule, cexpr, doc) IR_##name,
    KILN_OPS(X)
#undef X
    IR_OP_COUNT
} ir_op;

struct ir_module;
struct ir_inst;
struct ir_type;

/* A typing rule: from the operand types (args[0 .. in->nargs-1]) and the attributes of `in`,
 * the result type into *out. Returns 0, or -1 with a message in why[] phrased for a spec
 * author (per-token shapes, as the spec writes them). `in->type` is the declared type of ops
 * whose type is not implied by their operands (weight views, zeros); `in->guard` >= 0 makes
 * the result per token. */
typedef int (*ir_type_rule)(const struct ir_module *m, const struct ir_inst *in,
                            const struct ir_type *args, struct ir_type *out, char *why,
                            size_t size);

typedef struct ir_op_info {
    const char *name;
    int arity;
    int flags;
    const char *attrs;
    ir_type_rule rule;
    const char *cexpr;
    const char *doc;
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];

/* The op called `name`, or -1. */
int ir_op_lookup(const char *name);

#endif
