/* read.c - reading the text dump ("kiln-ir 2", docs/ir.md) back into a module.
 *
 * A hand-written line parser for exactly what print.c writes: the header lines in their
 * fixed order, then `forward {`, one instruction per line, and `}`. Value names %N may be
 * any increasing non-negative integers; they map to dense ids (the instruction indices), so
 * a dump printed by ir_print reads back to a module that prints the same text again.
 *
 * The input may be hostile (a hand-edited or truncated file): every byte is bounds-checked
 * against the current line, integers are checked for overflow, and the first error is
 * reported with diag_error at its place in the file; then ir_read returns NULL. The reader
 * checks the syntax and the references (%N, @N); types and invariants are the verifier's
 * job, which the caller runs.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct reader {
    const src_file *file;
    const char *end;           /* end of the text */
    const char *next;          /* start of the line after the current one */
    const char *line, *eol;    /* the current line, without its '\n' */
    const char *p;             /* the cursor, line <= p <= eol */
    int lineno;
    int failed;
    ir_module *m;
    int *name_of;              /* value name of each valued instruction, increasing ... */
    int *id_of;                /* ... and its id */
    int nnames, cnames;
} reader;

/* ---------------------------------------------------------------- errors */

static void fail_at(reader *r, const char *at, int len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Reports the first error only: after one, the rest of the file means nothing. */
static void fail_at(reader *r, const char *at, int len, const char *fmt, ...)
{
    if (r->failed)
        return;
    r->failed = 1;
    src_loc loc = {r->file, r->lineno, (int)(at - r->line) + 1, len > 0 ? len : 1};
    va_list ap;
    va_start(ap, fmt);
    diag_verror(loc, fmt, ap);
    va_end(ap);
}

/* Length of the token at p, for the caret run: up to a space or the end of the line. */
static int token_len(const reader *r, const char *p)
{
    const char *q = p;
    while (q < r->eol && *q != ' ')
        q++;
    return (int)(q - p);
}

/* What is at p, for "found ...": the token quoted, or the byte that cannot be shown. */
static void describe(const reader *r, const char *p, char *buf, size_t size)
{
    int n = token_len(r, p);
    if (p == r->eol)
        snprintf(buf, size, "the end of the line");
    else if (*p == ' ')
        snprintf(buf, size, "a space");
    else {
        for (int i = 0; i < n; i++)
            if ((unsigned char)p[i] < 32 || p[i] == 127) {
                n = i;
                break;
            }
        if (n == 0)
            snprintf(buf, size, "byte 0x%02x", (unsigned char)*p);
        else
            snprintf(buf, size, "'%.*s'", n > 24 ? 24 : n, p);
    }
}

/* "expected X, found Y" at the cursor. */
static void expected(reader *r, const char *what)
{
    char found[40];
    describe(r, r->p, found, sizeof found);
    fail_at(r, r->p, token_len(r, r->p), "expected %s, found %s", what, found);
}

/* ---------------------------------------------------------------- lines and tokens */

static int next_line(reader *r)
{
    if (r->next >= r->end)
        return 0;
    r->line = r->p = r->next;
    const char *nl = memchr(r->line, '\n', (size_t)(r->end - r->line));
    r->eol = nl ? nl : r->end;
    r->next = nl ? nl + 1 : r->end;
    r->lineno++;
    return 1;
}

/* Points the current line past the end of the file, for "truncated" errors. */
static void at_end_of_file(reader *r)
{
    if (r->end > r->file->text && r->end[-1] == '\n') {
        r->line = r->p = r->eol = r->end;
        r->lineno++;
    } else {
        r->p = r->eol;
    }
}

static int lit(reader *r, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(r->eol - r->p) < n || memcmp(r->p, s, n) != 0)
        return 0;
    r->p += n;
    return 1;
}

static int expect(reader *r, const char *s, const char *what)
{
    if (lit(r, s))
        return 1;
    expected(r, what);
    return 0;
}

static int expect_eol(reader *r)
{
    if (r->p == r->eol)
        return 1;
    char found[40];
    describe(r, r->p, found, sizeof found);
    fail_at(r, r->p, token_len(r, r->p), "unexpected %s at the end of the line", found);
    return 0;
}

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A run of [A-Za-z0-9_]; its length (0 if none). */
static int word(reader *r, const char **start)
{
    *start = r->p;
    while (r->p < r->eol && is_word_char(*r->p))
        r->p++;
    return (int)(r->p - *start);
}

/* The rest of the line as an interned string; control characters are refused (the printer
 * never writes them raw). */
static const char *rest_of_line(reader *r, const char *what)
{
    for (const char *q = r->p; q < r->eol; q++)
        if ((unsigned char)*q < 32 || *q == 127) {
            fail_at(r, q, 1, "control character (byte %d) in %s", (unsigned char)*q, what);
            return NULL;
        }
    const char *s = base_intern(r->p, (size_t)(r->eol - r->p));
    r->p = r->eol;
    return s;
}

/* An integer in [lo, hi], optionally signed. */
static int parse_int(reader *r, int64_t lo, int64_t hi, int64_t *out, const char *what)
{
    const char *start = r->p;
    int neg = lo < 0 && r->p < r->eol && *r->p == '-';
    r->p += neg;
    if (r->p == r->eol || *r->p < '0' || *r->p > '9') {
        r->p = start;
        expected(r, what);
        return 0;
    }
    int64_t v = 0;
    int over = 0;
    for (; r->p < r->eol && *r->p >= '0' && *r->p <= '9'; r->p++) {
        int d = *r->p - '0';
        /* accumulate negatively: -INT64_MIN does not exist */
        if (v < (INT64_MIN + d) / 10)
            over = 1;
        else
            v = v * 10 - d;
    }
    if (!neg) {
        if (v == INT64_MIN)
            over = 1;
        else
            v = -v;
    }
    int n = (int)(r->p - start);
    if (over) {
        fail_at(r, start, n, "integer overflow: %.*s does not fit in 64 bits", n > 24 ? 24 : n,
                start);
        return 0;
    }
    if (v < lo || v > hi) {
        fail_at(r, start, n, "%s out of range: %.*s (not in %lld .. %lld)", what,
                n > 24 ? 24 : n, start, (long long)lo, (long long)hi);
        return 0;
    }
    *out = v;
    return 1;
}

/* A float as %.9g prints it (also inf and nan); it must fit an f32, as every float of a
 * module is one. */
static int parse_float(reader *r, double *out, const char *what)
{
    const char *start = r->p;
    while (r->p < r->eol && (is_word_char(*r->p) || *r->p == '.' || *r->p == '+' ||
                             *r->p == '-'))
        r->p++;
    int n = (int)(r->p - start);
    char buf[64], *endp;
    if (n == 0 || n >= (int)sizeof buf) {
        r->p = start;
        expected(r, what);
        return 0;
    }
    memcpy(buf, start, (size_t)n);
    buf[n] = 0;
    double d = strtod(buf, &endp);
    if (endp != buf + n) {
        fail_at(r, start, n, "expected %s, found '%s'", what, buf);
        return 0;
    }
    if (isinf((float)d) && !isinf(d)) {
        fail_at(r, start, n, "%s %s is out of the range of f32", what, buf);
        return 0;
    }
    *out = d;
    return 1;
}

/* [a,b,c]: a float vector attribute (print.c), at most 65536 values, into the arena. */
static int parse_floats(reader *r, ir_inst *in)
{
    enum { MAX_FLOATS = 65536 };
    if (!expect(r, "[", "'[' (a list of numbers)"))
        return 0;
    float *v = NULL;
    int n = 0, cap = 0;
    while (!lit(r, "]")) {
        double d;
        if ((n && !expect(r, ",", "',' or ']'")) || !parse_float(r, &d, "a number")) {
            free(v);
            return 0;
        }
        if (n == MAX_FLOATS) {
            fail_at(r, r->p, 1, "more than %d numbers in a list", MAX_FLOATS);
            free(v);
            return 0;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            float *g = realloc(v, sizeof *v * (size_t)cap);
            if (!g)
                DIE("out of memory");
            v = g;
        }
        v[n++] = (float)d;
    }
    float *keep = base_alloc(sizeof *keep * (size_t)(n ? n : 1));
    if (n)
        memcpy(keep, v, sizeof *keep * (size_t)n);
    free(v);
    in->fvec = keep;
    in->nfvec = n;
    return 1;
}

/* A quoted string with \" \\ and \ooo escapes (print.c's print_string). */
static const char *parse_string(reader *r, const char *what)
{
    const char *start = r->p;
    if (!lit(r, "\"")) {
        expected(r, what);
        return NULL;
    }
    size_t cap = (size_t)(r->eol - r->p) + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        DIE("out of memory");
    for (;;) {
        if (r->p == r->eol) {
            fail_at(r, start, (int)(r->p - start), "unterminated string");
            break;
        }
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            r->p++;
            const char *s = base_intern(buf, n);
            free(buf);
            return s;
        }
        if (c < 32 || c == 127) {
            fail_at(r, r->p, 1, "control character (byte %d) in a string; write it as \\%03o",
                    c, c);
            break;
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            r->p++;
            continue;
        }
        const char *esc = r->p++;
        if (r->p < r->eol && (*r->p == '"' || *r->p == '\\')) {
            buf[n++] = *r->p++;
            continue;
        }
        int v = 0, digits = 0;
        while (digits < 3 && r->p < r->eol && *r->p >= '0' && *r->p <= '7')
            v = v * 8 + (*r->p++ - '0'), digits++;
        if (digits == 0) {
            fail_at(r, esc, 2, "unknown escape in a string (only \\\", \\\\ and \\ooo)");
            break;
        }
        if (v == 0 || v > 255) {
            fail_at(r, esc, (int)(r->p - esc), "escape \\%.*s is not a byte of a string",
                    digits, esc + 1);
            break;
        }
        buf[n++] = (char)v;
    }
    free(buf);
    return NULL;
}

/* f32[T, 4, S<=128], i32[T], bool[] (ir_type_str) */
static int parse_type(reader *r, ir_type *out)
{
    const char *start = r->p, *dt;
    int n = word(r, &dt);
    char name[16];
    int dtype = -1;
    if (n > 0 && n < (int)sizeof name) {
        memcpy(name, dt, (size_t)n);
        name[n] = 0;
        dtype = ir_dtype_lookup(name);
    }
    if (dtype < 0) {
        r->p = start;
        if (n == 0)
            expected(r, "a type such as f32[T, 64]");
        else
            fail_at(r, start, n, "unknown type '%.*s'", n > 24 ? 24 : n, start);
        return 0;
    }
    if (!expect(r, "[", "'[' after the dtype"))
        return 0;
    int tok = lit(r, "T"), rank = 0;
    int64_t dim[IR_MAX_RANK];
    unsigned seq = 0;
    while (!lit(r, "]")) {
        if ((tok || rank) && !expect(r, ", ", "', ' or ']' in the type"))
            return 0;
        if (rank == IR_MAX_RANK) {
            fail_at(r, r->p, token_len(r, r->p), "a type has at most %d dimensions",
                    IR_MAX_RANK);
            return 0;
        }
        int s = lit(r, "S<=");
        if (!parse_int(r, 0, INT64_MAX, &dim[rank], "a dimension"))
            return 0;
        seq |= (unsigned)s << rank;
        rank++;
    }
    char why[128];
    if (ir_type_make(out, (ir_dtype)dtype, tok, rank, dim, seq, why, sizeof why) != 0) {
        fail_at(r, start, (int)(r->p - start), "%s", why);
        return 0;
    }
    return 1;
}

/* ---------------------------------------------------------------- value names */

static void add_name(reader *r, int name, int id)
{
    if (r->nnames == r->cnames) {
        r->cnames = r->cnames ? 2 * r->cnames : 64;
        r->name_of = realloc(r->name_of, sizeof(int) * (size_t)r->cnames);
        r->id_of = realloc(r->id_of, sizeof(int) * (size_t)r->cnames);
        if (!r->name_of || !r->id_of)
            DIE("out of memory");
    }
    r->name_of[r->nnames] = name;
    r->id_of[r->nnames++] = id;
}

/* "%N" naming an earlier value; its id, or -1 after an error. */
static int parse_ref(reader *r, const char *what)
{
    const char *start = r->p;
    int64_t name;
    if (!expect(r, "%", what) || !parse_int(r, 0, INT_MAX, &name, "a value name"))
        return -1;
    int lo = 0, hi = r->nnames - 1;
    while (lo <= hi) {     /* names increase: binary search */
        int mid = lo + (hi - lo) / 2;
        if (r->name_of[mid] == name)
            return r->id_of[mid];
        if (r->name_of[mid] < name)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    fail_at(r, start, (int)(r->p - start), "%%%lld is not defined%s", (long long)name,
            r->nnames && name > r->name_of[r->nnames - 1]
                ? " (operands must name earlier values)" : "");
    return -1;
}

/* ---------------------------------------------------------------- header */

static int read_version(reader *r)
{
    int64_t v;
    if (!next_line(r) || !lit(r, "kiln-ir ")) {
        if (!r->line)
            r->line = r->p = r->eol = r->file->text, r->lineno = 1;
        expected(r, "'kiln-ir 2' on the first line (is this a kiln IR dump?)");
        return 0;
    }
    const char *at = r->p;
    if (!parse_int(r, 0, INT_MAX, &v, "a version number") || !expect_eol(r))
        return 0;
    if (v != IR_DUMP_VERSION) {
        fail_at(r, at, (int)(r->p - at),
                "version %lld dumps are not read; this kiln reads kiln-ir %d", (long long)v,
                IR_DUMP_VERSION);
        return 0;
    }
    return 1;
}

/* NAME " = " (param, runtime): the name runs to the first space. */
static const char *parse_binding_name(reader *r)
{
    const char *start = r->p;
    while (r->p < r->eol && *r->p != ' ')
        r->p++;
    if (r->p == start) {
        expected(r, "a name");
        return NULL;
    }
    for (const char *q = start; q < r->p; q++)
        if ((unsigned char)*q < 32 || *q == 127) {
            fail_at(r, q, 1, "control character in a name");
            return NULL;
        }
    const char *name = base_intern(start, (size_t)(r->p - start));
    return expect(r, " = ", "' = ' after the name") ? name : NULL;
}

static void read_param(reader *r)
{
    const char *name = parse_binding_name(r), *text;
    if (name && (text = rest_of_line(r, "a parameter's value")))
        ir_add_param(r->m, name, text);
}

static void read_runtime(reader *r)
{
    const char *name = parse_binding_name(r);
    double v;
    if (name && parse_float(r, &v, "a number") && expect_eol(r))
        ir_add_rtparam(r->m, name, v);
}

static void read_stat(reader *r)
{
    const char *at = r->p;
    int64_t slot;
    if (!expect(r, "#", "'#SLOT'") || !parse_int(r, 0, INT_MAX, &slot, "a slot number"))
        return;
    if (slot != r->m->nstats) {
        fail_at(r, at, (int)(r->p - at), "expected stat #%d here, found #%lld",
                r->m->nstats, (long long)slot);
        return;
    }
    const char *name;
    if (!expect(r, " ", "a space and the statistic's name") ||
        !(name = rest_of_line(r, "a statistic's name")))
        return;
    if (ir_add_stat(r->m, name) != slot)   /* ir_add_stat merges equal names */
        fail_at(r, at, (int)(r->p - at), "statistic '%s' is listed twice", name);
}

/* RECIPE := "name" TYPE | OP(RECIPE, ... [, B:E ...]) (print.c). NULL after reporting. */
static const ir_recipe *parse_recipe(reader *r, int depth)
{
    const char *at = r->p;
    if (depth > KILN_MAX_RECIPE_DEPTH) {
        fail_at(r, at, token_len(r, at), "a recipe nests at most %d deep", KILN_MAX_RECIPE_DEPTH);
        return NULL;
    }
    if (*r->p == '"') {
        const char *name = parse_string(r, "a checkpoint tensor's quoted name");
        src_loc loc = {r->file, r->lineno, (int)(at - r->line) + 1, (int)(r->p - at)};
        ir_type type;
        if (!name || !expect(r, " ", "a space and the tensor's type") || !parse_type(r, &type))
            return NULL;
        return ir_recipe_load(name, type, loc);
    }
    const char *op_at;
    int n = word(r, &op_at);
    int op = n > 0 ? ir_recipe_lookup(op_at, (size_t)n) : -1;
    if (op < 0) {
        r->p = at;
        expected(r, "a quoted tensor name or a recipe (concat, rows, cols, scale_cols, "
                 "matvec_t, transpose)");
        return NULL;
    }
    if (!expect(r, "(", "'(' after the recipe's name"))
        return NULL;
    const ir_recipe *src[256];
    int64_t range[512];
    int nsrc = 0, nrange = 0;
    do {
        if (nsrc + nrange && !expect(r, ", ", "', ' or ')'"))
            return NULL;
        if (*r->p >= '0' && *r->p <= '9') {
            if (nrange == 256) {
                fail_at(r, r->p, token_len(r, r->p), "a recipe has at most 256 ranges");
                return NULL;
            }
            if (!parse_int(r, 0, INT64_MAX, &range[2 * nrange], "a range's start") ||
                !expect(r, ":", "':' and the range's end") ||
                !parse_int(r, 0, INT64_MAX, &range[2 * nrange + 1], "a range's end"))
                return NULL;
            nrange++;
            continue;
        }
        if (nrange) {
            expected(r, "a range B:E (ranges come after the tensors)");
            return NULL;
        }
        if (nsrc == 256) {
            fail_at(r, r->p, token_len(r, r->p), "a recipe reads at most 256 tensors");
            return NULL;
        }
        if (!(src[nsrc++] = parse_recipe(r, depth + 1)))
            return NULL;
    } while (!lit(r, ")"));
    const ir_recipe *out;
    char why[256];
    if (ir_recipe_make(&out, (ir_recipe_op)op, src, nsrc, range, nrange, why, sizeof why)) {
        fail_at(r, at, (int)(r->p - at), "%s", why);
        return NULL;
    }
    return out;
}

static void read_tensor(reader *r)
{
    const char *at = r->p;
    int64_t index;
    ir_type type;
    if (!expect(r, "@", "'@INDEX'") || !parse_int(r, 0, INT_MAX, &index, "a tensor index"))
        return;
    if (index != r->m->ntensors) {
        fail_at(r, at, (int)(r->p - at), "expected tensor @%d here, found @%lld",
                r->m->ntensors, (long long)index);
        return;
    }
    if (index >= KILN_MAX_CKPT_TENSORS) {
        fail_at(r, at, (int)(r->p - at), "more than %d tensors", KILN_MAX_CKPT_TENSORS);
        return;
    }
    if (!expect(r, " ", "a space and the tensor's type") || !parse_type(r, &type) ||
        !expect(r, " ", "a space and the tensor's quoted name"))
        return;
    ir_layout layout = lit(r, "panel ") ? IR_LAYOUT_PANEL : IR_LAYOUT_ROWS;
    const char *name_at = r->p, *name = NULL, *decl = NULL;
    const ir_recipe *recipe = NULL;
    if (lit(r, "= ")) {
        name_at = r->p;
        if (!(recipe = parse_recipe(r, 0)))
            return;
        ir_type want = recipe->type;
        want.dtype = type.dtype;   /* the storage type is the tensor's own */
        char a[96], b[96];
        if (!ir_type_equal(&want, &type)) {
            fail_at(r, name_at, (int)(r->p - name_at), "the recipe makes %s, the tensor is %s",
                    ir_type_str(&recipe->type, a, sizeof a), ir_type_str(&type, b, sizeof b));
            return;
        }
    } else if (!(name = parse_string(r, "the tensor's quoted name or '= ' and a recipe"))) {
        return;
    }
    int name_len = (int)(r->p - name_at);
    while (r->p < r->eol && *r->p == ' ')
        r->p++;
    if (r->p < r->eol) {
        if (!expect(r, "; ", "'; ' and the declaration") ||
            !(decl = rest_of_line(r, "a declaration")))
            return;
    }
    /* the dump stands for the spec: a weight loader's message points at this line */
    src_loc loc = {r->file, r->lineno, (int)(name_at - r->line) + 1, name_len};
    if (recipe) {
        const char *label = decl ? decl : base_intern_str("recipe");
        int t = ir_add_recipe_tensor(r->m, label, type.dtype, recipe, loc);
        r->m->tensors[t].decl = decl;
        r->m->tensors[t].layout = layout;
    } else {
        int t = ir_add_tensor(r->m, name, decl, type, loc);   /* may move the array */
        r->m->tensors[t].layout = layout;
    }
}

static void read_batch(reader *r)
{
    int64_t t;
    if (expect(r, "T<=", "'T<=N'") && parse_int(r, INT64_MIN, INT64_MAX, &t, "a block size") &&
        expect_eol(r))
        r->m->t_max = t;
}

static void read_memory(reader *r)
{
    int64_t frame, state;
    if (expect(r, "frame ", "'frame N bytes, state M bytes'") &&
        parse_int(r, 0, INT64_MAX, &frame, "a byte count") &&
        expect(r, " bytes, state ", "' bytes, state M bytes'") &&
        parse_int(r, 0, INT64_MAX, &state, "a byte count") &&
        expect(r, " bytes", "' bytes'") && expect_eol(r)) {
        r->m->planned = 1;
        r->m->frame_bytes = frame;
        r->m->state_bytes = state;
    }
}

/* ---------------------------------------------------------------- instructions */

/* The name of attribute slot `spec` ("i:heads ..."): its length, *name set. */
static int slot_name(const char *spec, const char **name)
{
    *name = spec + 2;
    const char *end = strchr(*name, ' ');
    return end ? (int)(end - *name) : (int)strlen(*name);
}

/* Whether op's table lists an attribute called name[0 .. n-1]. */
static int op_has_attr(ir_op op, const char *name, int n)
{
    for (const char *p = ir_ops[op].attrs; *p;) {
        const char *s;
        int len = slot_name(p, &s);
        if (len == n && memcmp(s, name, (size_t)n) == 0)
            return 1;
        p = s[len] ? s + len + 1 : s + len;
    }
    return 0;
}

/* Whether " want=" comes later on the line (then it is out of order, not missing). */
static int attr_later(const reader *r, const char *want, int wlen)
{
    for (const char *q = r->p; q + wlen + 2 <= r->eol; q++)
        if (q[0] == ' ' && memcmp(q + 1, want, (size_t)wlen) == 0 && q[wlen + 1] == '=')
            return 1;
    return 0;
}

/* Explains why the next attribute is not `want`: missing, out of order, or unknown. */
static void bad_attr(reader *r, ir_op op, const char *want, int wlen)
{
    const char *save = r->p, *w;
    int n = 0;
    if (lit(r, " "))
        n = word(r, &w);
    int named = n > 0 && r->p < r->eol && *r->p == '=' && !(n == 3 && !memcmp(w, "mem", 3));
    r->p = save;
    if (!named)
        fail_at(r, r->p, token_len(r, r->p), "attribute '%.*s' missing", wlen, want);
    else if (op_has_attr(op, w, n) && attr_later(r, want, wlen))
        fail_at(r, w, n, "attribute '%.*s' out of order: '%s' takes '%.*s' first", n, w,
                ir_ops[op].name, wlen, want);
    else if (op_has_attr(op, w, n))
        fail_at(r, r->p, token_len(r, r->p), "attribute '%.*s' missing", wlen, want);
    else
        fail_at(r, w, n, "'%s' has no attribute '%.*s'", ir_ops[op].name, n, w);
}

/* " name=value" for each slot of the op's table, in order (print.c's print_attrs). */
static int parse_attrs(reader *r, ir_inst *in)
{
    int ki = 0;
    for (const char *p = ir_ops[in->op].attrs; *p;) {
        const char *name;
        int len = slot_name(p, &name);
        char kind = p[0];
        const char *save = r->p;
        if (!lit(r, " ") || (size_t)(r->eol - r->p) <= (size_t)len ||
            memcmp(r->p, name, (size_t)len) != 0 || r->p[len] != '=') {
            r->p = save;
            if (p[1] == '?') {     /* an optional slot may be absent: it stays unset */
                ki += kind == 'i';
                p = name[len] ? name + len + 1 : name + len;
                continue;
            }
            bad_attr(r, in->op, name, len);
            return 0;
        }
        r->p += len + 1;
        int ok = 1;
        if (kind == 't')
            ok = expect(r, "@", "'@INDEX'") &&
                 parse_int(r, 0, INT_MAX, &in->iattr[ki++], "a tensor index");
        else if (kind == 'i')
            ok = parse_int(r, INT64_MIN, INT64_MAX, &in->iattr[ki++], "an integer");
        else if (kind == 'f')
            ok = parse_float(r, &in->fattr, "a number");
        else if (kind == 'v')
            ok = parse_floats(r, in);
        else if (kind == 's')
            ok = (in->sattr = parse_string(r, "a quoted string")) != NULL;
        if (!ok)
            return 0;
        if (p[1] == '?' && kind == 'i' && in->iattr[ki - 1] == 0) {
            /* unset prints as absent: a 0 would not read back as it was written */
            fail_at(r, save + 1, (int)(r->p - save - 1), "optional attribute '%.*s' is 0; "
                    "leave it out", len, name);
            return 0;
        }
        if (kind == 't' && in->iattr[ki - 1] >= r->m->ntensors) {
            fail_at(r, save + 1, (int)(r->p - save - 1), "tensor @%lld does not exist",
                    (long long)in->iattr[ki - 1]);
            return 0;
        }
        p = name[len] ? name + len + 1 : name + len;
    }
    /* a further name=value is an attribute the op does not take (mem= is not one) */
    const char *save = r->p, *w;
    int n = lit(r, " ") ? word(r, &w) : 0;
    if (n > 0 && r->p < r->eol && *r->p == '=' && !(n == 3 && !memcmp(w, "mem", 3))) {
        fail_at(r, w, n, op_has_attr(in->op, w, n) ? "attribute '%.*s' given twice"
                                                    : "unexpected attribute '%.*s'", n, w);
        return 0;
    }
    r->p = save;
    return 1;
}

static int parse_operands(reader *r, ir_inst *in)
{
    int arity = ir_ops[in->op].arity;
    for (int k = 0; k < arity; k++) {
        char what[64];
        snprintf(what, sizeof what, "operand %d of %d of '%s' (%%N)", k + 1, arity,
                 ir_ops[in->op].name);
        if (!expect(r, k ? ", " : " ", what) || (in->args[k] = parse_ref(r, what)) < 0)
            return 0;
    }
    in->nargs = arity;
    const char *save = r->p;
    if (lit(r, ",") || lit(r, " %")) {
        fail_at(r, save, token_len(r, save), "too many operands: '%s' takes %d",
                ir_ops[in->op].name, arity);
        return 0;
    }
    return 1;
}

/* "l=3 e=2": items name=int, one space apart. */
static int check_scope(reader *r, const char *s, const char *e)
{
    while (s < e) {
        const char *item = s;
        while (s < e && is_word_char(*s))
            s++;
        int ok = s > item && s < e && *s == '=';
        if (ok) {
            s++;
            s += s < e && *s == '-';
            const char *digits = s;
            while (s < e && *s >= '0' && *s <= '9')
                s++;
            ok = s > digits && (s == e || (*s == ' ' && s + 1 < e));
        }
        if (!ok) {
            fail_at(r, item, token_len(r, item), "expected a loop index 'name=N' in the comment");
            return 0;
        }
        s += s < e;
    }
    return 1;
}

/* "; label scope": an optional label (no '='), then the scope. */
static int parse_comment(reader *r, ir_inst *in)
{
    const char *s = r->p, *e = r->eol, *sp = s;
    for (const char *q = s; q < e; q++)
        if ((unsigned char)*q < 32 || *q == 127) {
            fail_at(r, q, 1, "control character in a comment");
            return 0;
        }
    while (sp < e && *sp != ' ')
        sp++;
    if (!memchr(s, '=', (size_t)(sp - s))) {
        in->label = base_intern(s, (size_t)(sp - s));
        if (sp == e) {
            r->p = e;
            return 1;
        }
        s = sp + 1;
    }
    if (!check_scope(r, s, e))
        return 0;
    in->scope = base_intern(s, (size_t)(e - s));
    r->p = e;
    return 1;
}

/* After the attributes: [if %g] [mem=frame+OFF] [; comment] */
static int parse_tail(reader *r, ir_inst *in)
{
    if (lit(r, " if ") && (in->guard = parse_ref(r, "a guard %N")) < 0)
        return 0;
    if (lit(r, " mem=")) {
        if (lit(r, "frame+"))
            in->mem = MEM_FRAME;
        else if (lit(r, "state+"))
            in->mem = MEM_STATE;
        else {
            expected(r, "'frame+OFFSET' or 'state+OFFSET'");
            return 0;
        }
        if (!parse_int(r, INT64_MIN, INT64_MAX, &in->offset, "an offset"))
            return 0;
    }
    while (r->p < r->eol && *r->p == ' ')
        r->p++;
    if (r->p == r->eol)
        return 1;
    if (!lit(r, "; ")) {
        expected(r, "'if %N', 'mem=...', '; comment' or the end of the line");
        return 0;
    }
    return parse_comment(r, in);
}

static void read_inst(reader *r)
{
    ir_inst in = ir_inst_make(IR_token, 0, NULL);
    int64_t name = -1;
    const char *name_at = NULL, *op_at;
    if (!expect(r, "  ", "an instruction indented by two spaces, or '}'"))
        return;
    if (r->p < r->eol && *r->p == '%') {
        name_at = r->p++;
        if (!parse_int(r, 0, INT_MAX, &name, "a value name"))
            return;
        if (r->nnames && name <= r->name_of[r->nnames - 1]) {
            fail_at(r, name_at, (int)(r->p - name_at),
                    "value names must increase: %%%lld after %%%d", (long long)name,
                    r->name_of[r->nnames - 1]);
            return;
        }
        if (!expect(r, " : ", "' : ' and the type") || !parse_type(r, &in.type) ||
            !expect(r, " = ", "' = ' and the op"))
            return;
    }
    int n = word(r, &op_at);
    char opname[32];
    int op = -1;
    if (n > 0 && n < (int)sizeof opname) {
        memcpy(opname, op_at, (size_t)n);
        opname[n] = 0;
        op = ir_op_lookup(opname);
    }
    if (op < 0) {
        if (n == 0)
            expected(r, "an op name");
        else
            fail_at(r, op_at, n, "unknown op '%.*s'", n > 24 ? 24 : n, op_at);
        return;
    }
    in.op = (ir_op)op;
    int novalue = (ir_ops[op].flags & OPF_NOVALUE) != 0;
    if (novalue && name_at) {
        fail_at(r, name_at, (int)(op_at - name_at) + n,
                "'%s' has no value: write it without '%%N : TYPE ='", opname);
        return;
    }
    if (!novalue && !name_at) {
        fail_at(r, op_at, n, "'%s' has a value: expected '%%N : TYPE = %s'", opname, opname);
        return;
    }
    if (r->m->ninsts >= KILN_MAX_INSTS) {
        fail_at(r, op_at, n, "more than %d instructions", KILN_MAX_INSTS);
        return;
    }
    if (!parse_operands(r, &in) || !parse_attrs(r, &in) || !parse_tail(r, &in))
        return;
    int id = ir_append(r->m, &in);
    if (!novalue)
        add_name(r, (int)name, id);
}

/* `forward {`, the instructions, `}` and the end of the file. */
static void read_forward(reader *r)
{
    if (!expect(r, "{", "'{'") || !expect_eol(r))
        return;
    for (;;) {
        if (!next_line(r)) {
            at_end_of_file(r);
            fail_at(r, r->p, 1, "expected '}' to close 'forward {' (the file is truncated?)");
            return;
        }
        if (lit(r, "}")) {
            if (!expect_eol(r))
                return;
            if (next_line(r))
                fail_at(r, r->p, token_len(r, r->p), "text after the closing '}'");
            return;
        }
        read_inst(r);
        if (r->failed)
            return;
    }
}

/* The header lines after `model`, in print.c's order; then forward. */
static void read_header(reader *r)
{
    static const char *const keys[] = {"param", "runtime", "stat", "tensor",
                                       "batch", "memory",  "forward"};
    int rank = -1;
    for (;;) {
        if (!next_line(r)) {
            at_end_of_file(r);
            fail_at(r, r->p, 1, "expected 'forward {' (the file is truncated?)");
            return;
        }
        const char *w;
        int n = word(r, &w), k = -1;
        for (int i = 0; i < 7; i++)
            if ((int)strlen(keys[i]) == n && memcmp(keys[i], w, (size_t)n) == 0)
                k = i;
        if (k < 0) {
            r->p = w;
            expected(r, "a header line (param, runtime, stat, tensor, batch, memory) or "
                        "'forward {'");
            return;
        }
        if (k == rank && k >= 4) {
            fail_at(r, w, n, "a second '%s' line", keys[k]);
            return;
        }
        if (k < rank) {
            fail_at(r, w, n, "'%s' line out of order: the header is model, param, runtime, "
                    "stat, tensor, batch, memory, forward {", keys[k]);
            return;
        }
        if (k >= 5 && rank < 4) {
            fail_at(r, w, n, "expected 'batch T<=N' before '%s'", keys[k]);
            return;
        }
        rank = k;
        if (!expect(r, " ", "a space"))
            return;
        switch (k) {
        case 0: read_param(r); break;
        case 1: read_runtime(r); break;
        case 2: read_stat(r); break;
        case 3: read_tensor(r); break;
        case 4: read_batch(r); break;
        case 5: read_memory(r); break;
        default: read_forward(r); return;
        }
        if (r->failed)
            return;
    }
}

ir_module *ir_read(const src_file *file)
{
    reader r;
    memset(&r, 0, sizeof r);
    r.file = file;
    r.next = file->text;
    r.end = file->text + file->len;
    if (read_version(&r)) {
        const char *name;
        if (!next_line(&r)) {
            at_end_of_file(&r);
            fail_at(&r, r.p, 1, "expected 'model NAME' (the file is truncated?)");
        } else if (expect(&r, "model ", "'model NAME'") &&
                   (name = rest_of_line(&r, "the model's name"))) {
            r.m = ir_module_new(name);
            read_header(&r);
        }
    }
    free(r.name_of);
    free(r.id_of);
    if (r.failed) {
        ir_module_free(r.m);
        return NULL;
    }
    ir_module_derive(r.m);
    return r.m;
}
