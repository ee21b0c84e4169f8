/* fuse_attn.c - attention as one op: attn_scores -> [mul by a scalar constant] -> softmax ->
 * attn_apply becomes `attention q, k_cache, v_cache heads=H kv_heads=Hkv scale=F`.
 *
 * requires: verified IR, after dce (a dead reader would keep the probabilities)
 * preserves: values (up to the rounding of the online softmax, kernels.h krt_attention),
 *            the order of effects, every cache
 * fuses: a chain whose scores, scaled scores and probabilities each have exactly one reader,
 *        the next link, all unguarded. The fused kernel never stores the [T, H, S] scores or
 *        probabilities, so the frame loses them.
 * keeps: probabilities with other readers (UniAttn: a leader's P[l] that later layers'
 *        attn_apply reuse). They stay materialized as softmax writes them, [T, H, S] with
 *        each token's and head's row contiguous over S, which is what every attn_apply
 *        reading them streams; the leader's own apply reads them too.
 * Each decision is noted per layer scope ("l=2: attention fused").
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* The attention chain ending at attn_apply `apply`, when it can be fused. */
typedef struct attn_chain {
    int scores, scaled, probs, scale_const;   /* ids; scaled and scale_const -1 without mul */
    float scale;
} attn_chain;

static const char *scope_of(const ir_inst *in) { return in->scope ? in->scope : "-"; }

/* Whether `v` is a scalar constant; its value into *f. */
static int scalar_const(const ir_module *m, int v, float *f)
{
    const ir_inst *in = &m->insts[v];
    if (in->op != IR_const || in->type.rank != 0 || in->type.tok)
        return 0;
    *f = (float)in->fattr;
    return 1;
}

/* Finds the chain of `apply` (0), or says why not (-1, reason in *why). */
static int chain_of(const ir_module *m, const ir_uses *u, int apply, attn_chain *c,
                    const char **why)
{
    const ir_inst *ap = &m->insts[apply];
    c->probs = ap->args[0];
    c->scaled = -1;
    c->scale_const = -1;
    c->scale = 1.0f;
    const ir_inst *sm = &m->insts[c->probs];
    if (sm->op != IR_softmax) {
        *why = "its probabilities are not a softmax";
        return -1;
    }
    int x = sm->args[0];
    const ir_inst *xi = &m->insts[x];
    if (xi->op == IR_mul) {
        int k = scalar_const(m, xi->args[1], &c->scale) ? 1
                : scalar_const(m, xi->args[0], &c->scale) ? 0 : -1;
        if (k < 0) {
            *why = "the scores are scaled by a value not known at compile time";
            return -1;
        }
        c->scaled = x;
        c->scale_const = xi->args[k];
        x = xi->args[1 - k];
    }
    if (m->insts[x].op != IR_attn_scores) {
        *why = "the softmax is not over attention scores";
        return -1;
    }
    c->scores = x;
    const ir_inst *sc = &m->insts[x];
    int64_t hd = m->insts[sc->args[0]].type.dim[0] / sc->iattr[0];
    if (m->insts[sc->args[1]].type.dim[1] / hd != ap->iattr[0]) {
        *why = "the scores and the apply see different kv heads";
        return -1;
    }
    if (ap->guard >= 0 || sm->guard >= 0 || sc->guard >= 0 || (c->scaled >= 0 &&
                                                               xi->guard >= 0)) {
        *why = "it is guarded";
        return -1;
    }
    if (ir_use_count(u, c->scores) != 1 || (c->scaled >= 0 && ir_use_count(u, c->scaled) != 1)) {
        *why = "the scores have other readers";
        return -1;
    }
    return 0;
}

/* Notes that the probabilities of `probs` stay for their readers other than `apply`. */
static void note_kept(const ir_module *m, const ir_uses *u, int probs, int apply)
{
    char list[512] = "";
    size_t len = 0;
    int others = 0;
    for (int k = u->first[probs]; k < u->first[probs + 1]; k++) {
        int r = u->user[k];
        if (r == apply)
            continue;
        others++;
        if (len < sizeof list - 64)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", others > 1 ? ", " : "",
                                    scope_of(&m->insts[r]));
    }
    pass_note("fuse-attn", "%s: probabilities kept for %d more reader%s (%s)",
              scope_of(&m->insts[apply]), others, others == 1 ? "" : "s", list);
}

ir_module *pass_fuse_attn(ir_module *m)
{
    if (passes_opts.o0)
        return m;
    ir_uses u;
    ir_uses_build(m, &u);
    attn_chain *chain = calloc((size_t)(m->ninsts ? m->ninsts : 1), sizeof *chain);
    char *skip = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    char *fuse = calloc((size_t)(m->ninsts ? m->ninsts : 1), 1);
    int *fused_reads = calloc((size_t)(m->ninsts ? m->ninsts : 1), sizeof *fused_reads);
    if (!chain || !skip || !fuse || !fused_reads)
        DIE("out of memory");
    int nfused = 0;
    for (int i = 0; i < m->ninsts; i++) {
        if (m->insts[i].op != IR_attn_apply)
            continue;
        const char *why = NULL;
        attn_chain *c = &chain[i];
        if (chain_of(m, &u, i, c, &why) != 0) {
            pass_note("fuse-attn", "%s: not fused: %s", scope_of(&m->insts[i]), why);
            continue;
        }
        if (ir_use_count(&u, c->probs) != 1) {
            if (u.user[u.first[c->probs]] == i)    /* the first reader: the leader's own */
                note_kept(m, &u, c->probs, i);
            else
                pass_note("fuse-attn", "%s: reads the probabilities of %s", scope_of(&m->insts[i]),
                          scope_of(&m->insts[c->probs]));
            continue;
        }
        fuse[i] = 1;
        skip[c->scores] = skip[c->probs] = 1;
        if (c->scaled >= 0)
            skip[c->scaled] = 1;
        if (c->scale_const >= 0)
            fused_reads[c->scale_const]++;
        nfused++;
        pass_note("fuse-attn", "%s: attention fused (scores, scale %.9g, softmax, apply)",
                  scope_of(&m->insts[i]), (double)c->scale);
    }
    for (int i = 0; i < m->ninsts; i++)   /* a scale constant only fused muls read */
        if (fused_reads[i] && fused_reads[i] == ir_use_count(&u, i))
            skip[i] = 1;
    ir_module *out = m;
    if (nfused) {
        ir_rewriter rw;
        ir_rw_begin(&rw, m, NULL);
        for (int i = 0; i < m->ninsts; i++) {
            if (skip[i])
                continue;
            if (!fuse[i]) {
                ir_rw_copy(&rw, i);
                continue;
            }
            const ir_inst *ap = &m->insts[i], *sc = &m->insts[chain[i].scores];
            int args[3] = {rw.map[sc->args[0]], rw.map[sc->args[1]], rw.map[ap->args[1]]};
            ir_inst at = ir_inst_make(IR_attention, 3, args);
            at.iattr[0] = sc->iattr[0];
            at.iattr[1] = ap->iattr[0];
            at.fattr = chain[i].scale;
            at.type = ap->type;
            at.label = ap->label;
            at.scope = ap->scope;
            at.loc = ap->loc;
            ir_rw_replace(&rw, i, ir_rw_add(&rw, &at));
        }
        out = ir_rw_end(&rw);
    }
    free(chain);
    free(skip);
    free(fuse);
    free(fused_reads);
    ir_uses_free(&u);
    return out;
}
