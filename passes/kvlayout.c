/* kvlayout.c - the KV caches' layout and storage type: one descriptor per cache.
 *
 * requires: verified IR, after fuse-attn (the readers it sees are the final ones), before
 *           memplan (a cache's bytes follow its dtype: ir_value_bytes)
 * preserves: values (exactly with f32 caches; --kv-type f16/bf16 rounds what is stored to
 *            nearest even), every instruction and its order; all caches stay in the state
 * decides, for each cache whose every reader is an attention op (attention, attn_scores,
 *        attn_apply) agreeing on its kv heads:
 *        - the layout: head-major, [Hkv][S][dh] (`cache ... heads=Hkv layout="head"`): one kv
 *          head's positions are contiguous, which is what attention streams for each query
 *          head (an optimization: -O0 does not run the pass, and refuses --kv-type
 *          f16/bf16; called with passes_opts.o0 it keeps the position-major layout);
 *        - the storage type: --kv-type f32|f16|bf16 (passes_opts.kv_type, default f32) becomes
 *          the cache value's dtype (`f16[S<=128, 32] = cache ...`); cache_store converts,
 *          every reader widens as it reads.
 *        A cache read by anything else (an elementwise op over [S, w]) stays position-major
 *        f32. Each cache's descriptor (K or V of which op, kv heads, head dim, capacity,
 *        dtype, layout) is noted.
 */
#include <string.h>

#include "passes.h"

/* What the readers of one cache say of it. */
typedef struct kv_desc {
    char role[160];            /* "K of %25 (attention)", ... */
    int64_t kv_heads;          /* agreed by every reader; -1 when they disagree */
    const char *why_not;       /* a reader that is no attention op, or NULL */
} kv_desc;

/* The kv heads reader r sees in the cache it reads as operand k, and its role ("K", "V"),
 * or 0 when r is not an attention op reading a cache there. */
static int64_t reader_heads(const ir_module *m, const ir_inst *r, int k, const char **role)
{
    int64_t width = m->insts[r->args[k]].type.dim[1];
    switch (r->op) {
    case IR_attention:
        *role = k == 1 ? "K" : "V";
        return r->iattr[1];
    case IR_attn_scores:
        *role = "K";
        return k == 1 ? width / (m->insts[r->args[0]].type.dim[0] / r->iattr[0]) : 0;
    case IR_attn_apply:
        *role = "V";
        return k == 1 ? r->iattr[0] : 0;
    default:
        return 0;
    }
}

static void describe(const ir_module *m, const ir_uses *u, int cache, kv_desc *d)
{
    size_t len = 0;
    d->role[0] = 0;
    d->kv_heads = 0;
    d->why_not = NULL;
    for (int j = u->first[cache]; j < u->first[cache + 1]; j++) {
        const ir_inst *r = &m->insts[u->user[j]];
        for (int k = 0; k < r->nargs; k++) {
            if (r->args[k] != cache)
                continue;
            const char *role = "?";
            int64_t h = reader_heads(m, r, k, &role);
            if (h <= 0) {
                d->why_not = ir_ops[r->op].name;
                continue;
            }
            d->kv_heads = d->kv_heads == 0 || d->kv_heads == h ? h : -1;
            if (len < sizeof d->role - 48)
                len += (size_t)snprintf(d->role + len, sizeof d->role - len, "%s%s of %%%d (%s)",
                                        len ? ", " : "", role, u->user[j], ir_ops[r->op].name);
        }
    }
    if (d->kv_heads < 0 && !d->why_not)
        d->why_not = "attention ops with different kv heads";
}

/* The dtype --kv-type asks for, or -1 after reporting a bad one. */
static int kv_dtype(void)
{
    const char *t = passes_opts.kv_type;
    if (!t || !strcmp(t, "f32"))
        return DT_F32;
    if (!strcmp(t, "f16"))
        return DT_F16;
    if (!strcmp(t, "bf16"))
        return DT_BF16;
    fprintf(stderr, "kiln: error: --kv-type must be f32, f16 or bf16, not '%s'\n", t);
    return -1;
}

static void note_cache(const ir_module *m, int cache, const ir_inst *out, const kv_desc *d)
{
    const ir_inst *in = &m->insts[cache];
    char what[400];
    int64_t w = out->type.dim[1], cap = out->type.dim[0];
    if (out->sattr)
        snprintf(what, sizeof what, "%s, %lld kv heads x %lld, capacity %lld, %s, head-major "
                 "[%lld][S][%lld]", d->role, (long long)out->iattr[1],
                 (long long)(w / out->iattr[1]), (long long)cap, ir_dtype_name(out->type.dtype),
                 (long long)out->iattr[1], (long long)(w / out->iattr[1]));
    else
        snprintf(what, sizeof what, "%s, width %lld, capacity %lld, %s, position-major",
                 d->role[0] ? d->role : "no attention reader", (long long)w, (long long)cap,
                 ir_dtype_name(out->type.dtype));
    if (d->why_not)
        snprintf(what + strlen(what), sizeof what - strlen(what), "; kept so: read by %s",
                 d->why_not);
    pass_note("kvlayout", "%%%d %s%s%s: %s", cache, in->label ? in->label : "cache",
              in->scope ? " " : "", in->scope ? in->scope : "", what);
}

ir_module *pass_kvlayout(ir_module *m)
{
    int dt = kv_dtype();
    if (dt < 0)
        return NULL;
    ir_uses u;
    ir_uses_build(m, &u);
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        int id = ir_rw_copy(&rw, i);
        if (m->insts[i].op != IR_cache)
            continue;
        kv_desc d;
        describe(m, &u, i, &d);
        ir_inst *c = &rw.m->insts[id];
        if (!d.why_not && d.kv_heads > 0) {
            c->type.dtype = (ir_dtype)dt;
            if (!passes_opts.o0) {
                c->iattr[1] = d.kv_heads;
                c->sattr = base_intern_str("head");
            }
        }
        note_cache(m, i, c, &d);
    }
    ir_uses_free(&u);
    return ir_rw_end(&rw);
}
