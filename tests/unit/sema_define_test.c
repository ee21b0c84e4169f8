/* sema_define_test.c - TAP test of how the front end takes parameter values from outside the
 * spec (frontend/sema.c define_value): the shapes a config gives (a JSON scalar, a JSON array
 * as "a,b,c") besides -D text, the spellings of an integer, and messages that name the
 * origin (`cfg.json: error: key "k" = ...`) instead of -D. The command line only makes -D
 * text, so the config shapes are driven here through sema_lower directly. Diagnostics go to
 * stderr, which is redirected to a temporary file and read back.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../frontend/sema.h"

static int n_test, n_fail;

static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++n_test);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    n_fail += !cond;
    return cond;
}

static const char spec_text[] =
    "model t {\n"
    "  param dim = 8, vocab = 4, heads = 2\n"
    "  param bases = [10000, 500000]\n"
    "  param scale = 1.5\n"
    "  weights { embed [vocab, dim] = \"embed\" }\n"
    "  forward(token) {\n"
    "    return linear(rope(embed[token], heads, bases, \"half\") * scale, embed)\n"
    "  }\n"
    "}\n";

static char err_text[4096];

/* Lowers the spec with one define; the param `want` must read `text` (NULL: lowering must
 * fail). The diagnostics land in err_text. */
static ir_module *lower(sema_define d)
{
    static src_file std_file, spec_file;
    src_file_from_string(&std_file, "<std>", "");
    src_file_from_string(&spec_file, "t.kiln", spec_text);
    ast_node *std = parse_file(&std_file), *spec = parse_file(&spec_file);
    diag_reset();
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    if (!tmp || saved < 0 || dup2(fileno(tmp), 2) < 0)
        abort();
    ir_module *m = std && spec ? sema_lower(std, spec, &d, 1) : NULL;
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err_text, 1, sizeof err_text - 1, tmp);
    err_text[n] = '\0';
    fclose(tmp);
    return m;
}

static const char *param(const ir_module *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name))
            return m->params[i].text;
    return "";
}

static void accepts(sema_define d, const char *name, const char *want, const char *what)
{
    ir_module *m = lower(d);
    if (!ok(m && !strcmp(param(m, name), want), "%s: %s = %s", what, name, want))
        printf("# got %s; stderr:\n# %s\n", m ? param(m, name) : "(failed)", err_text);
    if (m)
        ir_module_free(m);
}

static void refuses(sema_define d, const char *message, const char *what)
{
    ir_module *m = lower(d);
    if (!ok(!m && strstr(err_text, message), "%s: %s", what, message))
        printf("# stderr:\n# %s\n", err_text);
    if (m)
        ir_module_free(m);
}

int main(void)
{
    const char *cfg = "cfg.json: key \"rope_thetas\"";
    accepts((sema_define){"bases", "1,2", 0, SD_LIST, cfg}, "bases", "[1, 2]",
            "a JSON array for a list");
    accepts((sema_define){"bases", "1e4, 2e4", 0, SD_TEXT, NULL}, "bases", "[10000, 20000]",
            "-D a,b with spaces and exponents");
    accepts((sema_define){"dim", "16.0", 1, SD_SCALAR, "cfg.json"}, "dim", "16",
            "a JSON 16.0 for an integer");
    accepts((sema_define){"dim", "1.6e1", 0, SD_TEXT, NULL}, "dim", "16", "-D 1.6e1");
    accepts((sema_define){"scale", "true", 0, SD_TEXT, NULL}, "scale", "1", "true for a number");
    refuses((sema_define){"bases", "5", 1, SD_SCALAR, cfg},
            "cfg.json: error: key \"rope_thetas\" = 5: 'bases' is a list parameter: give a list",
            "a JSON scalar for a list");
    refuses((sema_define){"dim", "8,8", 1, SD_LIST, "cfg.json: key \"hidden_size\""},
            "cfg.json: error: key \"hidden_size\" = 8,8: 'dim' takes one value, not a list",
            "a JSON array for a scalar");
    refuses((sema_define){"dim", "2.5", 1, SD_SCALAR, "cfg.json"},
            "cfg.json: error: dim=2.5: 'dim' is an integer parameter",
            "a fraction for an integer, the origin a path");
    refuses((sema_define){"bases", "1,,2", 0, SD_TEXT, NULL},
            "-D: error: bases=1,,2: 'bases' is a list: an item is empty", "an empty item");
    refuses((sema_define){"bases", "", 1, SD_LIST, cfg}, "give at least one item",
            "an empty JSON array");
    refuses((sema_define){"bases", "1,2,3", 0, SD_TEXT, NULL},
            "rope's base list has 3 values, one per head is 2", "a -D list of the wrong length");
    refuses((sema_define){"heads", "1e400", 0, SD_TEXT, NULL},
            "-D: error: heads=1e400: 'heads' is an integer parameter", "an integer too large");
    printf("1..%d\n", n_test);
    base_free_all();
    return n_fail != 0;
}
