/* ops.h - the op table: the single source of truth for IR op names, arity and properties.
 *
 * X(name, arity, flags, attrs, cexpr, doc)
 *   name   op name as printed in dumps and used as IR_<name>
 *   arity  number of value operands
 *   flags  OPF_* properties below
 *   attrs  attribute slots, in print order: "i:heads" an integer in iattr[k] (k counts the
 *          i: slots), "f:base" the float fattr, "s:mode" the string sattr
 *   cexpr  for elementwise ops, the C expression of one element over a, b, c (float);
 *          "" for the rest (the emitter has a case for each)
 *   doc    one line, shown by `kiln ops`
 *
 * Shapes: every value has a static shape; the sequence dimension S (cached positions) is the
 * only symbolic one: it is stored as its capacity with the dim's bit set in ir_type.seq.
 */
#ifndef KILN_OPS_H
#define KILN_OPS_H

enum {
    OPF_SOURCE = 1 << 0,  /* no operands: reads the token, a weight, a constant, a parameter */
    OPF_ELEMWISE = 1 << 1, /* elementwise over operands of one shape (scalars broadcast) */
    OPF_REDUCE = 1 << 2,  /* reduces a tensor to a scalar */
    OPF_EFFECT = 1 << 3,  /* has an effect besides its value: never removed, never reordered */
    OPF_STATE = 1 << 4,   /* owns state that lives across tokens (the KV cache) */
    OPF_BOOL = 1 << 5,    /* result is bool (0/1) */
};

#define KILN_OPS(X)                                                                            \
    X(token, 0, OPF_SOURCE, "", "", "the input token id of this step (i32 scalar)")           \
    X(position, 0, OPF_SOURCE, "", "", "the position of this step, from 0 (i32 scalar)")      \
    X(weight, 0, OPF_SOURCE, "i:tensor i:offset i:stride", "",                                 \
      "a view of checkpoint tensor #tensor: element offset, row stride")                      \
    X(const, 0, OPF_SOURCE, "f:value", "", "a scalar f32 constant")                            \
    X(rtparam, 0, OPF_SOURCE, "i:index", "", "a run-time parameter, changeable with --set")    \
    X(zeros, 0, OPF_SOURCE, "", "", "a tensor of zeros (the start of a guarded sum)")         \
    X(embed, 2, 0, "", "", "row args[1] (token) of the table args[0] [V, d] -> [d]")          \
    X(linear, 2, 0, "", "", "matrix-vector product W x, W [out, in] (args[1]) -> [out]")      \
    X(neg, 1, OPF_ELEMWISE, "", "-a", "negation")                                              \
    X(exp, 1, OPF_ELEMWISE, "", "expf(a)", "e^a")                                              \
    X(sqrt, 1, OPF_ELEMWISE, "", "sqrtf(a)", "square root")                                    \
    X(rsqrt, 1, OPF_ELEMWISE, "", "1.0f / sqrtf(a)", "reciprocal square root")                 \
    X(tanh, 1, OPF_ELEMWISE, "", "tanhf(a)", "hyperbolic tangent")                             \
    X(sigmoid, 1, OPF_ELEMWISE, "", "1.0f / (1.0f + expf(-a))", "logistic sigmoid")            \
    X(silu, 1, OPF_ELEMWISE, "", "a / (1.0f + expf(-a))", "x * sigmoid(x)")                    \
    X(gelu, 1, OPF_ELEMWISE, "",                                                               \
      "0.5f * a * (1.0f + tanhf(0.7978845608f * (a + 0.044715f * a * a * a)))",               \
      "GELU, tanh approximation")                                                              \
    X(relu, 1, OPF_ELEMWISE, "", "(a > 0.0f ? a : 0.0f)", "max(a, 0)")                         \
    X(erf, 1, OPF_ELEMWISE, "", "erff(a)", "the error function (exact GELU: x*(1+erf(x/sqrt2))/2)") \
    X(not, 1, OPF_ELEMWISE | OPF_BOOL, "", "(a == 0.0f ? 1.0f : 0.0f)", "logical not")        \
    X(add, 2, OPF_ELEMWISE, "", "a + b", "sum")                                                \
    X(sub, 2, OPF_ELEMWISE, "", "a - b", "difference")                                         \
    X(mul, 2, OPF_ELEMWISE, "", "a * b", "product")                                            \
    X(div, 2, OPF_ELEMWISE, "", "a / b", "quotient")                                           \
    X(max, 2, OPF_ELEMWISE, "", "(a > b ? a : b)", "larger of two")                            \
    X(min, 2, OPF_ELEMWISE, "", "(a < b ? a : b)", "smaller of two")                           \
    X(pow, 2, OPF_ELEMWISE, "", "powf(a, b)", "a to the power b")                              \
    X(lt, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a < b ? 1.0f : 0.0f)", "a < b")                    \
    X(gt, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a > b ? 1.0f : 0.0f)", "a > b")                    \
    X(le, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a <= b ? 1.0f : 0.0f)", "a <= b")                  \
    X(ge, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a >= b ? 1.0f : 0.0f)", "a >= b")                  \
    X(eq, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a == b ? 1.0f : 0.0f)", "a == b")                  \
    X(ne, 2, OPF_ELEMWISE | OPF_BOOL, "", "(a != b ? 1.0f : 0.0f)", "a != b")                  \
    X(and, 2, OPF_ELEMWISE | OPF_BOOL, "", "((a != 0.0f && b != 0.0f) ? 1.0f : 0.0f)", "and")  \
    X(or, 2, OPF_ELEMWISE | OPF_BOOL, "", "((a != 0.0f || b != 0.0f) ? 1.0f : 0.0f)", "or")    \
    X(select, 3, OPF_ELEMWISE, "", "(a != 0.0f ? b : c)", "a ? b : c")                         \
    X(sum, 1, OPF_REDUCE, "", "", "sum of all elements -> scalar")                             \
    X(mean, 1, OPF_REDUCE, "", "", "mean of all elements -> scalar")                           \
    X(amax, 1, OPF_REDUCE, "", "", "largest element -> scalar")                                \
    X(count, 1, OPF_REDUCE, "", "", "number of non-zero (true) elements -> scalar")            \
    X(dot, 2, OPF_REDUCE, "", "", "inner product of two vectors -> scalar")                    \
    X(extract, 1, 0, "i:index", "", "element #index of a vector -> scalar")                    \
    X(topk, 1, OPF_BOOL, "i:k", "",                                                            \
      "mask of the k largest elements of a vector (the lower index first on ties)")          \
    X(slice, 1, 0, "i:start", "", "elements [start, start+n) of a vector, n from the type")    \
    X(concat, 2, 0, "", "", "two vectors end to end")                                          \
    X(softmax, 1, 0, "", "",                                                                   \
      "softmax over the last dim; over the first pos+1 entries when it is S")                  \
    X(rope, 1, 0, "i:heads i:rot f:base s:mode", "",                                           \
      "rotary embedding at the current position of the first rot dims of each head; "         \
      "mode half or interleaved")                                                              \
    X(cache, 1, OPF_STATE | OPF_EFFECT, "", "",                                                \
      "append args[0] [w] at the current position -> the cache [S, w]")                       \
    X(attn_scores, 2, 0, "i:heads", "",                                                        \
      "q [H*dh] . cache rows [S, Hkv*dh] -> [H, S] (GQA: head h reads kv head h/(H/Hkv))")    \
    X(attn_apply, 2, 0, "i:kv_heads", "",                                                      \
      "probs [H, S] x cache [S, Hkv*dh] -> [H*dh], same GQA mapping")                         \
    X(accum_if, 3, 0, "", "",                                                                  \
      "args[0] + args[1] when the scalar args[2] is true, else args[0] (guarded sums)")        \
    X(stat, 1, OPF_EFFECT, "i:slot", "", "accumulate a scalar into run-time statistic #slot")  \
    X(output, 1, OPF_EFFECT, "", "", "the logits of this step")

typedef enum ir_op {
#define X(name, arity, flags, attrs, cexpr, doc) IR_##name,
    KILN_OPS(X)
#undef X
    IR_OP_COUNT
} ir_op;

typedef struct ir_op_info {
    const char *name;
    int arity;
    int flags;
    const char *attrs;
    const char *cexpr;
    const char *doc;
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];

/* The op called `name`, or -1. */
int ir_op_lookup(const char *name);

#endif
