/* share_softmax.c - softmax sharing (UniAttn, arXiv 2502.00439): run only when asked.
 *
 * requires: verified IR; layers marked by the scope prefix `l=N`; in each layer it touches,
 *           one attention: attn_scores -> elementwise ops (the scale) -> softmax -> attn_apply
 * preserves: everything but the probabilities the reusers' attn_apply read, and the order
 *            of what it keeps. It CHANGES THE MODEL: `kiln build` measures by how much
 *            (codegen/calib.c).
 * With --share-softmax=G,b,e (passes_opts.share_group/begin/end), layer l leads iff l < b,
 * l >= e or (l - b) % G == 0; every other layer l reuses the attention probabilities of its
 * leader b + (l - b) / G * G: its attn_apply reads the leader's softmax instead of its own
 * (same heads, same capacity, else it refuses, naming the layer). What only the reuser's
 * own probabilities needed goes: its scores, softmax, Q, K and K cache. The pass drops
 * them itself, because a cache is an effect dce keeps; the weights they viewed are left to
 * dce (which drops tensors nothing views).
 */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

int share_softmax_requested(void)
{
    return passes_opts.share_group > 0;
}

/* The layer an instruction was made in (the N of its scope's "l=N"), or -1. */
static int share_layer_of(const ir_inst *in)
{
    return (int)ir_scope_index(in->scope, "l");
}

/* The attn_scores the softmax `sm` normalizes: its operand leads back through elementwise
 * ops on the scores' shape (the scale, masks) to it. -1 if none. */
static int share_scores_of(const ir_module *m, int sm)
{
    const ir_type *want = &m->insts[sm].type;
    int v = m->insts[sm].args[0];
    while (m->insts[v].op != IR_attn_scores) {
        const ir_inst *in = &m->insts[v];
        if (!(ir_ops[in->op].flags & OPF_ELEMWISE))
            return -1;
        int next = -1;
        for (int k = 0; k < in->nargs && next < 0; k++)
            if (ir_type_equal(&m->insts[in->args[k]].type, want))
                next = in->args[k];
        if (next < 0)
            return -1;
        v = next;
    }
    return v;
}

/* One layer's attention: the attn_apply, the softmax it reads and the scores that softmax
 * normalizes (-1: none of its own). */
typedef struct share_attn {
    int apply, softmax, scores;
    int count;                 /* attn_apply instructions with a softmax of their own */
} share_attn;

static int share_leader_of(int l)
{
    const passes_options *o = &passes_opts;
    return o->share_begin + (l - o->share_begin) / o->share_group * o->share_group;
}

static int share_is_leader(int l)
{
    const passes_options *o = &passes_opts;
    return l < o->share_begin || l >= o->share_end || (l - o->share_begin) % o->share_group == 0;
}

/* The attention of each layer (nlayers entries, malloc'ed). */
static share_attn *share_find_attention(const ir_module *m, int nlayers)
{
    share_attn *a = malloc(sizeof *a * (size_t)nlayers);
    if (!a)
        DIE("out of memory");
    for (int l = 0; l < nlayers; l++)
        a[l] = (share_attn){-1, -1, -1, 0};
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        int l = share_layer_of(in);
        if (in->op != IR_attn_apply || l < 0)
            continue;
        int p = in->args[0];
        int scores = m->insts[p].op == IR_softmax ? share_scores_of(m, p) : -1;
        if (scores < 0 || share_layer_of(&m->insts[p]) != l)
            continue;
        a[l].apply = i;
        a[l].softmax = p;
        a[l].scores = scores;
        a[l].count++;
    }
    return a;
}

/* Why layer l cannot take part (NULL: it can). */
static const char *share_unfit(const ir_module *m, const share_attn *a, int l)
{
    if (a[l].count == 0)
        return "has no attention of its own (attn_scores -> softmax -> attn_apply)";
    if (a[l].count > 1)
        return "has more than one attention";
    if (m->insts[a[l].apply].guard >= 0 || m->insts[a[l].softmax].guard >= 0)
        return "has a guarded attention";
    return NULL;
}

/* Checks every reuser against its leader; 0, or -1 after reporting the first misfit. */
static int share_check(const ir_module *m, const share_attn *a, int nlayers)
{
    const passes_options *o = &passes_opts;
    for (int l = o->share_begin; l < o->share_end && l < nlayers; l++) {
        if (share_is_leader(l))
            continue;
        int lead = share_leader_of(l);
        const char *why = share_unfit(m, a, l);
        int bad = why ? l : lead;
        if (!why)
            why = share_unfit(m, a, lead);
        if (why) {
            fprintf(stderr, "kiln: error: --share-softmax: layer l=%d %s%s\n", bad, why,
                    bad == lead ? " (it leads a group)" : "");
            return -1;
        }
        if (a[lead].softmax > a[l].apply) {
            fprintf(stderr, "kiln: error: --share-softmax: layer l=%d attends before its "
                    "leader l=%d computes its probabilities\n", l, lead);
            return -1;
        }
        const ir_type *have = &m->insts[a[lead].softmax].type;
        const ir_type *need = &m->insts[a[l].softmax].type;
        if (!ir_type_equal(have, need)) {
            char h[64], n[64];
            fprintf(stderr, "kiln: error: --share-softmax: layer l=%d needs probabilities %s "
                    "(heads, capacity), but the softmax of its leader l=%d is %s\n", l,
                    ir_type_str(need, n, sizeof n), lead, ir_type_str(have, h, sizeof h));
            return -1;
        }
    }
    return 0;
}

/* live[i] = 1 where an effect reads value i, transitively, when attn_apply i reads
 * reads[i] (>= 0) instead of its probabilities and the caches released[] are no effects of
 * their own (only their readers keep them). */
static void share_mark_live(const ir_module *m, const int *reads, const char *released,
                            char *live)
{
    memset(live, 0, (size_t)m->ninsts);
    for (int i = m->ninsts - 1; i >= 0; i--) {
        const ir_inst *in = &m->insts[i];
        if ((ir_ops[in->op].flags & OPF_EFFECT) && !(released && released[i]))
            live[i] = 1;
        if (!live[i])
            continue;
        for (int k = 0; k < in->nargs; k++)
            live[k == 0 && reads && reads[i] >= 0 ? reads[i] : in->args[k]] = 1;
        if (in->guard >= 0)
            live[in->guard] = 1;
    }
}

/* drop[i] = 1 for what only the redirected probabilities needed: live before the
 * redirection (reads[]), not after it, the reusers' K caches (released[]) no longer roots. */
static char *share_dropped(const ir_module *m, const int *reads, const char *released)
{
    size_t n = (size_t)(m->ninsts ? m->ninsts : 1);
    char *before = malloc(n), *after = malloc(n);
    if (!before || !after)
        DIE("out of memory");
    share_mark_live(m, NULL, NULL, before);
    share_mark_live(m, reads, released, after);
    for (int i = 0; i < m->ninsts; i++)
        before[i] = before[i] && !after[i];
    free(after);
    return before;
}

/* Whether instruction i, redirected by reads[], reads a value that is dropped (dead code
 * reading dead code). */
static int share_reads_dropped(const ir_module *m, int i, const int *reads, const char *drop)
{
    const ir_inst *in = &m->insts[i];
    for (int k = 0; k < in->nargs; k++)
        if (drop[k == 0 && reads[i] >= 0 ? reads[i] : in->args[k]])
            return 1;
    return in->guard >= 0 && drop[in->guard];
}

/* The number of layers: one more than the largest l=N of a scope. */
static int share_count_layers(const ir_module *m)
{
    int nlayers = 0;
    for (int i = 0; i < m->ninsts; i++) {
        int l = share_layer_of(&m->insts[i]);
        if (l >= nlayers)
            nlayers = l + 1;
    }
    return nlayers;
}

/* Points each reuser's attn_apply at its leader's softmax (reads[apply] = softmax) and
 * releases the K cache its own scores read; one note per reuser. Returns their count. */
static int share_redirect(const ir_module *m, const share_attn *a, int *reads, char *released)
{
    const passes_options *o = &passes_opts;
    int nshared = 0;
    for (int l = o->share_begin; l < o->share_end; l++) {
        if (share_is_leader(l))
            continue;
        reads[a[l].apply] = a[share_leader_of(l)].softmax;
        int k_cache = m->insts[a[l].scores].args[1];
        if (m->insts[k_cache].op == IR_cache)
            released[k_cache] = 1;
        pass_note("share-softmax", "l=%d reads the softmax of l=%d", l, share_leader_of(l));
        nshared++;
    }
    return nshared;
}

/* The module without the dropped instructions, the redirected attn_apply reading the
 * leader's softmax. */
static ir_module *share_rebuild(const ir_module *m, const int *reads, char *drop)
{
    ir_rewriter rw;
    ir_rw_begin(&rw, m, NULL);
    for (int i = 0; i < m->ninsts; i++) {
        if (drop[i] || share_reads_dropped(m, i, reads, drop)) {
            drop[i] = 1;
            continue;
        }
        if (reads[i] < 0) {
            ir_rw_copy(&rw, i);
            continue;
        }
        ir_inst in = m->insts[i];  /* an unguarded attn_apply (share_check) */
        in.args[0] = rw.map[reads[i]];
        in.args[1] = rw.map[in.args[1]];
        ir_rw_replace(&rw, i, ir_rw_add(&rw, &in));
    }
    return ir_rw_end(&rw);
}

ir_module *pass_share_softmax(ir_module *m)
{
    const passes_options *o = &passes_opts;
    if (!share_softmax_requested())
        return m;
    int nlayers = share_count_layers(m);
    if (nlayers == 0) {
        fprintf(stderr, "kiln: error: --share-softmax: the model has no layers (no instruction "
                "scoped l=N)\n");
        return NULL;
    }
    if (o->share_end > nlayers) {
        fprintf(stderr, "kiln: error: --share-softmax=%d,%d,%d: the end %d is past the last "
                "layer (the model has %d layers, l=0 .. l=%d)\n", o->share_group, o->share_begin,
                o->share_end, o->share_end, nlayers, nlayers - 1);
        return NULL;
    }
    share_attn *a = share_find_attention(m, nlayers);
    if (share_check(m, a, nlayers) != 0) {
        free(a);
        return NULL;
    }
    size_t n = (size_t)(m->ninsts ? m->ninsts : 1);
    int *reads = malloc(sizeof *reads * n);
    char *released = calloc(n, 1);
    if (!reads || !released)
        DIE("out of memory");
    for (int i = 0; i < m->ninsts; i++)
        reads[i] = -1;
    int nshared = share_redirect(m, a, reads, released);
    free(a);
    ir_module *out = m;
    if (nshared) {
        pass_note("share-softmax", "G=%d b=%d e=%d: %d of %d layers reuse a leader's "
                  "probabilities", o->share_group, o->share_begin, o->share_end, nshared, nlayers);
        char *drop = share_dropped(m, reads, released);
        out = share_rebuild(m, reads, drop);
        free(drop);
    } else {
        pass_note("share-softmax", "G=%d b=%d e=%d: every layer leads; nothing shared",
                  o->share_group, o->share_begin, o->share_end);
    }
    free(reads);
    free(released);
    return out;
}
