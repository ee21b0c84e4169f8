/* lower.c - the lowering stage (lower.h): kernels, rows, thread splits and places.
 *
 * The module must be memory-planned. One walk in instruction order makes one step per
 * instruction that computes something (sources that live in the blob, the tokens or the
 * run-time parameters make none; they are places operands point at). Guard regions
 * (ir_guard_regions) become per-token loops.
 */
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "../runtime/kernels.h"
#include "../runtime/kiln_blob.h"

/* Products at least this large are split between the threads; smaller ones are not worth a
 * barrier. */
#define LOWER_SPLIT_MACS (1 << 15)

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        DIE("out of memory");
    return p;
}

/* Bytes between rows of a tensor, and the byte offset of column col in a row. */
static int64_t tensor_row_bytes(const ir_tensor *t)
{
    uint64_t bytes = 0;
    int64_t cols = t->type.rank ? t->type.dim[t->type.rank - 1] : 1;
    if (kblob_row_bytes(codegen_kblob_dtype(t->type.dtype), (uint64_t)cols, &bytes) < 0)
        DIE("tensor %s: no row size", t->decl);
    return (int64_t)bytes;
}

static int64_t col_bytes(ir_dtype dt, int64_t col)
{
    uint64_t bytes = 0;
    if (kblob_row_bytes(codegen_kblob_dtype(dt), (uint64_t)col, &bytes) < 0)
        DIE("column %lld of a %s tensor is not on a block boundary", (long long)col,
            ir_dtype_name(dt));
    return (int64_t)bytes;
}

/* The place of value id. */
static lw_ref ref_of(const ir_module *m, int id)
{
    const ir_inst *in = &m->insts[id];
    lw_ref r;
    memset(&r, 0, sizeof r);   /* padding too: dedup.c compares references byte for byte */
    r.place = LW_NONE;
    r.tok = in->type.tok;
    r.row = ir_type_numel(&in->type);
    r.i32 = in->type.dtype == DT_I32;
    switch (in->op) {
    case IR_token:
        r.place = LW_TOKENS;
        break;
    case IR_weight: {
        const ir_tensor *t = &m->tensors[in->iattr[0]];
        r.place = LW_WEIGHT;
        r.tensor = (int)in->iattr[0];
        r.ld = tensor_row_bytes(t);
        r.dtype = codegen_kblob_dtype(t->type.dtype);
        r.layout = t->layout == IR_LAYOUT_PANEL ? KBLOB_PANEL : KBLOB_ROWS;
        r.wrows = t->type.rank == 2 ? t->type.dim[0] : 1;
        r.wcols = t->type.rank ? t->type.dim[t->type.rank - 1] : 1;
        r.row0 = in->iattr[1];
        r.col0 = in->iattr[2];
        /* a byte offset only in the rows layout (elementwise readers index it); the kernels
         * that read panels take the tensor, row0 and col0 */
        if (r.layout == KBLOB_ROWS)
            r.offset = in->iattr[1] * r.ld + col_bytes(t->type.dtype, in->iattr[2]);
        break;
    }
    case IR_rtparam:
        r.place = LW_RTPARAM;
        r.index = (int)in->iattr[0];
        break;
    default:
        if (in->mem == MEM_NONE)
            DIE("value %%%d (%s) has no memory", id, ir_ops[in->op].name);
        r.place = in->mem == MEM_STATE ? LW_STATE : LW_FRAME;
        r.offset = in->offset;
    }
    if (in->type.seq == 1u)            /* [S, w]: a cache, or a value computed from one */
        r.cap = in->type.dim[0];
    if (in->op == IR_cache) {          /* its storage: what the attention kernels read */
        r.dtype = codegen_kblob_dtype(in->type.dtype);
        r.head_major = in->sattr != NULL;
        r.kv_heads = in->sattr ? in->iattr[1] : 0;
    }
    return r;
}

/* need_all[i]: every row of value i is needed (it reaches a cache or a statistic), not just
 * the rows whose logits are wanted. */
static char *rows_needed(const ir_module *m)
{
    char *all = xcalloc((size_t)m->ninsts, 1);
    for (int i = m->ninsts - 1; i >= 0; i--) {
        const ir_inst *in = &m->insts[i];
        if (in->op == IR_cache || in->op == IR_stat)
            all[i] = 1;
        if (!all[i])
            continue;
        for (int k = 0; k < in->nargs; k++)
            all[in->args[k]] = 1;
        if (in->guard >= 0)
            all[in->guard] = 1;
    }
    return all;
}

static int unsupported(const ir_module *m, int id, const char *what)
{
    const ir_inst *in = &m->insts[id];
    if (in->loc.file)
        diag_error(in->loc, "%s", what);
    else
        fprintf(stderr, "kiln: error: %%%d (%s): %s\n", id, ir_ops[in->op].name, what);
    return -1;
}

/* Fills the kernel and its parameters of the step for instruction id; 0 or -1. */
static int choose_kernel(const ir_module *m, int id, lw_step *s)
{
    const ir_inst *in = &m->insts[id];
    const ir_type *t = &in->type;
    const ir_type *t0 = in->nargs > 0 ? &m->insts[in->args[0]].type : NULL;
    const ir_type *t1 = in->nargs > 1 ? &m->insts[in->args[1]].type : NULL;
    s->op = in->op;
    if ((ir_ops[in->op].flags & OPF_ELEMWISE) || in->op == IR_accum_if) {
        s->kernel = LK_map;
        s->n[0] = ir_type_numel(t);
        if (t->seq == 2u) {                /* [H, S] scores: the live positions of each row */
            s->n[1] = t->dim[0];
            s->n[2] = t->dim[1];
            s->n[3] = 1;
        } else if (t->seq == 1u) {         /* [S, w] over a cache: the positions written */
            s->n[1] = t->dim[1];
            s->n[3] = 2;
        }
        return 0;
    }
    switch (in->op) {
    case IR_const:
        s->kernel = LK_constant;
        s->f = (float)in->fattr;
        return 0;
    case IR_position:
        s->kernel = LK_positions;
        return 0;
    case IR_zeros:
        s->kernel = LK_zeros;
        s->n[0] = ir_type_numel(t);
        return 0;
    case IR_widen:
        s->kernel = LK_widen;
        s->n[0] = t0->rank == 2 ? t0->dim[0] : 1;
        s->n[1] = t0->rank ? t0->dim[t0->rank - 1] : 1;
        return 0;
    case IR_embed:
        s->kernel = LK_embed;
        s->n[0] = t0->dim[0];
        s->n[1] = t0->dim[1];
        return 0;
    case IR_linear:
        s->kernel = LK_linear;
        s->n[0] = t1->dim[0];
        s->n[1] = t1->dim[1];
        s->par = t1->dim[0] * t1->dim[1] >= LOWER_SPLIT_MACS ? LW_PAR_PANELS : LW_PAR_ONE;
        s->flag = in->sattr && !strcmp(in->sattr, "q8_0");   /* passes/quant_act.c */
        return 0;
    case IR_sum: case IR_mean: case IR_amax: case IR_count:
        s->kernel = LK_reduce;
        s->n[0] = t0->dim[0];
        return 0;
    case IR_dot:
        s->kernel = LK_dot;
        s->n[0] = t0->dim[0];
        return 0;
    case IR_extract:
        s->kernel = LK_extract;
        s->n[0] = t0->dim[0];
        s->n[1] = in->iattr[0];
        return 0;
    case IR_topk:
        s->kernel = LK_topk;
        s->n[0] = t0->dim[0];
        s->n[1] = in->iattr[0];
        return 0;
    case IR_slice:
        s->kernel = LK_slice;
        s->n[0] = t0->dim[0];
        s->n[1] = in->iattr[0];
        s->n[2] = in->iattr[1];
        return 0;
    case IR_concat:
        s->kernel = LK_concat;
        s->n[0] = t0->dim[0];
        s->n[1] = t1->dim[0];
        return 0;
    case IR_softmax:
        if (t->seq == 2u) {
            s->kernel = LK_softmax_causal;
            s->n[0] = t->dim[0];
            s->n[1] = t->dim[1];
        } else {
            s->kernel = LK_softmax;
            s->n[0] = t->dim[0];
        }
        return 0;
    case IR_rope:
        s->kernel = LK_rope;
        s->n[0] = in->iattr[0];
        s->n[1] = t->dim[0] / in->iattr[0];
        s->n[2] = in->iattr[1];
        s->f = (float)in->fattr;
        s->flag = strcmp(in->sattr, "interleaved") == 0;
        return 0;
    case IR_rope_heads:
        s->kernel = LK_rope_heads;
        s->n[0] = in->iattr[0];
        s->n[1] = t->dim[0] / in->iattr[0];
        s->n[2] = in->iattr[1];
        s->fvec = in->fvec;
        s->nfvec = in->nfvec;
        s->flag = strcmp(in->sattr, "interleaved") == 0;
        return 0;
    case IR_cache:
        s->kernel = LK_cache_store;
        s->n[1] = in->sattr ? in->iattr[1] : 1;   /* position-major: one row of width */
        s->n[2] = t->dim[1] / s->n[1];
        return 0;
    case IR_attn_scores: {
        int64_t heads = in->iattr[0], hd = t0->dim[0] / heads;
        s->kernel = LK_attn_scores;
        s->n[0] = heads;
        s->n[1] = t1->dim[1] / hd;
        s->n[2] = hd;
        s->n[3] = t1->dim[0];
        return 0;
    }
    case IR_attn_apply: {
        int64_t kvh = in->iattr[0], hd = t1->dim[1] / kvh;
        s->kernel = LK_attn_apply;
        s->n[0] = t0->dim[0];
        s->n[1] = kvh;
        s->n[2] = hd;
        s->n[3] = t0->dim[1];
        return 0;
    }
    case IR_attention:
        s->kernel = LK_attention;
        s->n[0] = in->iattr[0];
        s->n[1] = in->iattr[1];
        s->n[2] = t1->dim[1] / in->iattr[1];
        s->n[3] = m->insts[in->args[2]].type.dim[1] / in->iattr[1];
        s->f = (float)in->fattr;
        return 0;
    case IR_stat:
        s->kernel = LK_stat;
        s->n[0] = in->iattr[0];
        return 0;
    case IR_output:
        s->kernel = LK_output;
        return 0;
    default:
        DIE("lower: no kernel for op %s", ir_ops[in->op].name);
    }
}

/* Whether instruction `in` makes a step: everything that has memory or an effect (sources
 * that only name a place, the tokens, weights, run-time parameters, make none). */
static int makes_step(const ir_inst *in)
{
    return ir_needs_storage(in) || (ir_ops[in->op].flags & OPF_NOVALUE);
}

/* The rows the step of instruction i runs for, outside any guard region. */
static lw_rows step_rows(const ir_module *m, int i, const char *all)
{
    const ir_inst *in = &m->insts[i];
    int tok = in->type.tok || (in->nargs && m->insts[in->args[0]].type.tok);
    if (in->op == IR_stat || in->op == IR_position)
        return LW_ROWS_ALL;    /* every token counts once; every row has a position */
    if (!tok)
        return LW_ROWS_NONE;
    return all[i] ? LW_ROWS_ALL : LW_ROWS_TAIL;
}

/* How the threads share the step (lower.h: lw_par): products by panels (chosen with the
 * kernel), attention by (token, head) pairs, what works row by row by rows, the rest on one
 * thread. */
static lw_par step_par(const lw_step *s)
{
    switch (s->kernel) {
    case LK_linear:
        return s->par;
    case LK_attn_scores: case LK_attn_apply: case LK_attention: case LK_softmax_causal:
        return LW_PAR_PAIRS;
    case LK_constant: case LK_positions: case LK_widen: case LK_stat: case LK_output:
        return LW_PAR_ONE;
    default:
        return s->rows == LW_ROWS_ALL || s->rows == LW_ROWS_TAIL ? LW_PAR_ROWS : LW_PAR_ONE;
    }
}

/* A head-major cache's heads are its layout: an attention step must read it with as many
 * kv heads (n1), which passes/kvlayout.c makes sure of. 0, or -1. */
static int reads_caches_as_stored(const lw_step *s)
{
    if (s->kernel != LK_attn_scores && s->kernel != LK_attn_apply && s->kernel != LK_attention)
        return 0;
    for (int k = 0; k < s->nsrc; k++)
        if (s->src[k].head_major && s->src[k].kv_heads != s->n[1])
            return -1;
    return 0;
}

/* Appends the step of instruction i; a guarded one joins (or opens) its region's loop. */
static int add_step(lw_program *p, const ir_module *m, int i, const char *all,
                    const int *region_end, int *open_loop)
{
    const ir_inst *in = &m->insts[i];
    lw_step *s = &p->steps[p->nsteps];
    s->inst = i;
    s->loop = -1;
    if (choose_kernel(m, i, s) != 0)
        return -1;
    if (!(ir_ops[in->op].flags & OPF_NOVALUE))
        s->dst = ref_of(m, i);
    s->nsrc = in->nargs;
    for (int k = 0; k < in->nargs; k++)
        s->src[k] = ref_of(m, in->args[k]);
    if (reads_caches_as_stored(s) != 0)
        return unsupported(m, i, "a head-major cache is read with another number of kv heads");
    s->rows = step_rows(m, i, all);
    s->par = step_par(s);
    if (in->guard >= 0) {
        if (*open_loop < 0) {          /* a guard region starts: a per-token loop */
            *open_loop = p->nloops++;
            lw_loop *l = &p->loops[*open_loop];    /* calloc'd: zero padding (dedup.c) */
            l->first = p->nsteps;
            l->guard = ref_of(m, in->guard);
            l->rows = LW_ROWS_TAIL;
        }
        lw_loop *l = &p->loops[*open_loop];
        if (s->rows == LW_ROWS_ALL)    /* the loop visits every token any step needs */
            l->rows = LW_ROWS_ALL;
        s->rows = LW_ROWS_LOOP;
        s->loop = *open_loop;
        if (region_end[i] == i) {
            l->last = p->nsteps;
            *open_loop = -1;
        }
    }
    if (in->op == IR_cache) {
        lw_cache *c = &p->caches[p->ncaches++];
        c->label = base_intern_fmt("%s%s%s", in->label ? in->label : "cache",
                                   in->scope ? " " : "", in->scope ? in->scope : "");
        c->width = in->type.dim[1];
        c->capacity = in->type.dim[0];
        c->offset = in->offset;
        c->kv_heads = s->n[1];
        c->dtype = s->dst.dtype;
        c->head_major = s->dst.head_major;
    }
    if (in->op == IR_output)
        p->logits = s->src[0];
    if (s->kernel == LK_linear) {          /* its scratch: a block's rows of its input */
        uint64_t need = p->index_bytes + krt_linear_scratch(m->t_max, s->n[1]);
        p->scratch_bytes = need > p->scratch_bytes ? need : p->scratch_bytes;
    }
    p->nsteps++;
    return 0;
}

int lower_program(const ir_module *m, lw_program *p)
{
    memset(p, 0, sizeof *p);
    if (!m->planned)
        DIE("lower: the module's memory is not planned");
    p->m = m;
    p->steps = xcalloc((size_t)m->ninsts, sizeof *p->steps);
    p->loops = xcalloc((size_t)m->ninsts, sizeof *p->loops);
    p->caches = xcalloc((size_t)m->ninsts, sizeof *p->caches);
    p->tensor_dtype = xcalloc((size_t)m->ntensors, sizeof *p->tensor_dtype);
    for (int i = 0; i < m->ntensors; i++)
        p->tensor_dtype[i] = codegen_kblob_dtype(m->tensors[i].type.dtype);
    p->index_bytes = ((uint64_t)m->t_max * sizeof(int32_t) + 63) / 64 * 64;
    p->scratch_bytes = p->index_bytes;
    char *all = rows_needed(m);
    int *region_end = ir_guard_regions(m);
    int rc = 0, open_loop = -1;
    /* constants first: memory planning gave them slots of their own for the whole call */
    for (int i = 0; i < m->ninsts && rc == 0; i++)
        if (m->insts[i].op == IR_const)
            rc = add_step(p, m, i, all, region_end, &open_loop);
    for (int i = 0; i < m->ninsts && rc == 0; i++)
        if (makes_step(&m->insts[i]) && m->insts[i].op != IR_const)
            rc = add_step(p, m, i, all, region_end, &open_loop);
    free(region_end);
    free(all);
    if (rc != 0)
        lower_free(p);
    return rc;
}

void lower_free(lw_program *p)
{
    lower_dedup_free(p);
    free(p->steps);
    free(p->loops);
    free(p->caches);
    free(p->tensor_dtype);
    memset(p, 0, sizeof *p);
}
