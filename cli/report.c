/* report.c - the build report (--report): the memory plan of a compiled module and the
 * decisions the passes recorded, as aligned columns with exact bytes and their KiB/MiB.
 *
 * Sections: the passes (ran or why not, instruction counts), the weights by group (a group
 * is the spec's name of a tensor without its index: `wq` for `wq[3]`), each KV cache (the
 * state), the frame (one call's working memory), then every pass_note line, grouped by the
 * pass that wrote it, in the order the passes first spoke. The totals are the module's own
 * figures (state_bytes, frame_bytes) and the packer's (kblob_tensor_bytes), so the report
 * cannot drift from what the program holds.
 */
#include <stdlib.h>
#include <string.h>

#include "../codegen/codegen.h"
#include "../passes/passes.h"
#include "../runtime/kiln_blob.h"
#include "report.h"

/* "532.6 KiB" for a byte count: the unit that keeps 1 to 4 digits before the point. */
static const char *human_bytes(char *buf, size_t size, uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)n);
    else
        snprintf(buf, size, "%.*f %s", u == 1 ? 1 : 2, v, units[u]);
    return buf;
}

/* The packed size of tensor t: as packed, or as its storage type packs. 0 when unknown. */
static uint64_t tensor_bytes(const ir_module *m, const pack_tensor *packed, int t,
                             const char **dtype)
{
    uint64_t dims[4] = {0}, bytes = 0;
    uint32_t code, rank;
    if (packed) {
        code = packed[t].dtype, rank = packed[t].rank;
        memcpy(dims, packed[t].dims, sizeof dims);
    } else {
        const ir_type *ty = &m->tensors[t].type;
        code = codegen_kblob_dtype(ty->dtype), rank = (uint32_t)ty->rank;
        for (int k = 0; k < ty->rank && k < 4; k++)
            dims[k] = (uint64_t)ty->dim[k];
    }
    *dtype = kblob_dtype_name(code) ? kblob_dtype_name(code) : "?";
    if (kblob_tensor_bytes(code, rank, dims, &bytes) < 0)
        return 0;
    return bytes;
}

typedef struct weight_group {
    const char *name;          /* interned: the decl up to its '[' */
    int count;
    char dtypes[32];           /* "f32" or "f32,bf16" */
    uint64_t bytes;
} weight_group;

static void add_dtype(weight_group *g, const char *dt)
{
    size_t n = strlen(dt), len = strlen(g->dtypes);
    for (const char *p = g->dtypes; (p = strstr(p, dt)); p += n)
        if ((p == g->dtypes || p[-1] == ',') && (p[n] == 0 || p[n] == ','))
            return;
    if (len + n + 2 < sizeof g->dtypes)
        snprintf(g->dtypes + len, sizeof g->dtypes - len, "%s%s", len ? "," : "", dt);
}

/* One row: the left part padded to a column, then the exact bytes and their unit. */
enum { LEFT_WIDTH = 60 };
static void row(FILE *out, const char *left, uint64_t bytes)
{
    char h[32];
    fprintf(out, "  %-*s %14llu  %10s\n", LEFT_WIDTH, left, (unsigned long long)bytes,
            human_bytes(h, sizeof h, bytes));
}

static void heading(FILE *out, const char *title, const char *columns)
{
    fprintf(out, "\n%s\n  %-*s %14s\n", title, LEFT_WIDTH, columns, "bytes");
}

static void print_weights(FILE *out, const ir_module *m, const pack_tensor *packed)
{
    weight_group *g = calloc((size_t)(m->ntensors ? m->ntensors : 1), sizeof *g);
    if (!g)
        DIE("out of memory");
    int ng = 0;
    uint64_t total = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const char *decl = m->tensors[t].decl ? m->tensors[t].decl : m->tensors[t].name;
        const char *name = base_intern(decl, strcspn(decl, "["));
        int k = 0;
        while (k < ng && g[k].name != name)
            k++;
        if (k == ng)
            g[ng++].name = name;
        const char *dt;
        uint64_t b = tensor_bytes(m, packed, t, &dt);
        g[k].count++;
        g[k].bytes += b;
        add_dtype(&g[k], dt);
        total += b;
    }
    char left[128];
    heading(out, packed ? "weights (as packed into the program)"
                        : "weights (in their storage types, as they would be packed)",
            "group                            count  storage");
    for (int k = 0; k < ng; k++) {
        snprintf(left, sizeof left, "%-32s %5d  %s", g[k].name, g[k].count, g[k].dtypes);
        row(out, left, g[k].bytes);
    }
    snprintf(left, sizeof left, "%-32s %5d", "total", m->ntensors);
    row(out, left, total);
    free(g);
}

static uint64_t planned_bytes(const ir_module *m, const ir_inst *in)
{
    return (uint64_t)(ir_value_bytes(m, in) + 63) / 64 * 64;   /* as memplan aligns */
}

static void print_caches(FILE *out, const ir_module *m)
{
    char left[160];
    int n = 0;
    uint64_t total = 0;
    heading(out, "kv caches (the state, kept across calls)",
            "value   label            scope       width  capacity  dtype");
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->op != IR_cache)
            continue;
        char id[16];
        snprintf(id, sizeof id, "%%%d", i);
        snprintf(left, sizeof left, "%-7s %-16s %-10s %6lld %9lld  %s", id,
                 in->label ? in->label : "-", in->scope ? in->scope : "-",
                 (long long)in->type.dim[in->type.rank - 1], (long long)in->iattr[0],
                 ir_dtype_name(in->type.dtype));
        row(out, left, planned_bytes(m, in));
        n++, total += planned_bytes(m, in);
    }
    snprintf(left, sizeof left, "total: %d caches", n);
    row(out, left, total);
    row(out, "state of the memory plan (memory ... state)", (uint64_t)m->state_bytes);
}

static void print_frame(FILE *out, const ir_module *m)
{
    int values = 0, slots = 0;
    uint64_t unshared = 0;
    for (int i = 0; i < m->ninsts; i++) {
        const ir_inst *in = &m->insts[i];
        if (in->mem != MEM_FRAME)
            continue;
        values++;
        unshared += planned_bytes(m, in);
        int first = 1;         /* the first value at its offset opens a slot */
        for (int j = 0; j < i && first; j++)
            first = !(m->insts[j].mem == MEM_FRAME && m->insts[j].offset == in->offset);
        slots += first;
    }
    char left[128], title[96];
    snprintf(title, sizeof title, "activation arena (the frame of one call, blocks of T<=%lld "
             "tokens)", (long long)m->t_max);
    heading(out, title, "");
    row(out, "frame of the memory plan (memory frame ...)", (uint64_t)m->frame_bytes);
    snprintf(left, sizeof left, "%d values in %d slots; without slot reuse", values, slots);
    row(out, left, unshared);
}

static void print_passes(FILE *out)
{
    fprintf(out, "\npasses%s\n", passes_opts.o0 ? " (-O0: the required and requested ones)" : "");
    for (int i = 0; i < passes_count(); i++) {
        const pass_record *r = passes_record(i);
        if (r->status == PASS_RAN)
            fprintf(out, "  %-16s %-26s %6d -> %6d instructions\n", passes_info(i)->name,
                    passes_status_name(r->status), r->insts_before, r->insts_after);
        else
            fprintf(out, "  %-16s %s\n", passes_info(i)->name, passes_status_name(r->status));
    }
}

/* The notes, grouped by the pass before their ": ", groups in order of first appearance. */
static void print_decisions(FILE *out)
{
    int n = passes_note_count();
    fprintf(out, "\ndecisions\n");
    if (n == 0)
        fprintf(out, "  (no pass recorded a decision)\n");
    char *done = calloc((size_t)(n ? n : 1), 1);
    if (!done)
        DIE("out of memory");
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        const char *note = passes_note(i);
        size_t len = strcspn(note, ":");
        fprintf(out, "  %.*s\n", (int)len, note);
        for (int j = i; j < n; j++) {
            const char *other = passes_note(j);
            if (done[j] || strncmp(other, note, len) || other[len] != ':')
                continue;
            done[j] = 1;
            fprintf(out, "    %s\n", other + len + (other[len + 1] == ' ' ? 2 : 1));
        }
    }
    free(done);
}

void report_print(FILE *out, const ir_module *m, const pack_tensor *packed, const char *source)
{
    fprintf(out, "kiln report: model %s (%s)\n", m->name ? m->name : "?", source);
    print_passes(out);
    print_weights(out, m, packed);
    if (m->planned) {
        print_caches(out, m);
        print_frame(out, m);
    } else {
        fprintf(out, "\nmemory: not planned (the run stopped before the pass memplan)\n");
    }
    print_decisions(out);
}
