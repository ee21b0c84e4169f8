/* ast.c - syntax tree nodes and the builders the grammar actions call.
 *
 * Everything a parse allocates (nodes, their child arrays, identifier and literal text) lives in
 * the base arena (base/arena.c), so trees from several files (the standard library, then the
 * user's spec) coexist until base_free_all() drops them together. Identifiers are interned:
 * equal names are the same pointer.
 */
#include "ast.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- nodes and lists */

ast_node *ast_new(ast_kind kind, src_loc loc)
{
    ast_node *n = base_alloc(sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->loc = loc;
    return n;
}

void ast_push(ast_list *list, ast_node *node)
{
    if (list->n == list->cap) {
        int cap = list->cap ? list->cap * 2 : 4;
        ast_node **v = base_alloc((size_t)cap * sizeof *v);
        if (list->n)
            memcpy(v, list->v, (size_t)list->n * sizeof *v);
        list->v = v;   /* the old array stays in the arena until base_free_all */
        list->cap = cap;
    }
    list->v[list->n++] = node;
}

const char *ast_kind_name(ast_kind kind)
{
    static const char *const names[] = {
        [AST_SPEC] = "spec", [AST_MODEL] = "model", [AST_PARAM] = "param", [AST_LET] = "let",
        [AST_DEF] = "def", [AST_BLOCK] = "block", [AST_FORWARD] = "forward",
        [AST_WEIGHTS] = "weights", [AST_WEIGHT_DECL] = "weight_decl",
        [AST_WEIGHT_FOR] = "weight_for", [AST_RANGE] = "range", [AST_STMTS] = "stmts",
        [AST_ASSIGN] = "assign", [AST_FOR] = "for", [AST_IF] = "if", [AST_RETURN] = "return",
        [AST_STAT] = "stat", [AST_INT] = "int", [AST_FLOAT] = "float", [AST_STRING] = "string",
        [AST_NAME] = "name", [AST_BINARY] = "binary", [AST_UNARY] = "unary", [AST_COND] = "cond",
        [AST_CALL] = "call", [AST_INDEX] = "index", [AST_SLICE] = "slice", [AST_SUM] = "sum",
        [AST_ASSERT] = "assert", [AST_LIST] = "list",
    };
    if ((unsigned)kind < sizeof names / sizeof names[0] && names[kind])
        return names[kind];
    return "?";
}

const char *ast_op_text(int op)
{
    static const char *const text[] = {
        [AST_OP_ADD] = "+", [AST_OP_SUB] = "-", [AST_OP_MUL] = "*", [AST_OP_DIV] = "/",
        [AST_OP_MOD] = "%", [AST_OP_LT] = "<", [AST_OP_GT] = ">", [AST_OP_LE] = "<=",
        [AST_OP_GE] = ">=", [AST_OP_EQ] = "==", [AST_OP_NE] = "!=", [AST_OP_AND] = "&&",
        [AST_OP_OR] = "||", [AST_OP_NEG] = "-", [AST_OP_NOT] = "!",
    };
    if (op >= 0 && (size_t)op < sizeof text / sizeof text[0] && text[op])
        return text[op];
    return "?";
}

/* ---------------------------------------------------------------- builders (parser.y) */

ast_list ast_list_add(ast_list list, ast_node *node)
{
    ast_push(&list, node);
    return list;
}

ast_list ast_list_params(ast_list items, ast_list params, int runtime)
{
    for (int i = 0; i < params.n; i++) {
        params.v[i]->flag = runtime;
        ast_push(&items, params.v[i]);
    }
    return items;
}

ast_node *ast_int(src_loc loc, int64_t value)
{
    ast_node *n = ast_new(AST_INT, loc);
    n->ival = value;
    return n;
}

ast_node *ast_float(src_loc loc, const char *text)
{
    ast_node *n = ast_new(AST_FLOAT, loc);
    n->str = text;
    n->fval = strtod(text, NULL);
    return n;
}

ast_node *ast_string(src_loc loc, const char *s)
{
    ast_node *n = ast_new(AST_STRING, loc);
    n->str = s;
    return n;
}

ast_node *ast_name(src_loc loc, const char *name)
{
    return ast_named(AST_NAME, loc, name, NULL);
}

ast_node *ast_named(ast_kind kind, src_loc loc, const char *name, ast_node *a)
{
    ast_node *n = ast_new(kind, loc);
    n->name = name;
    n->a = a;
    return n;
}

ast_node *ast_make(ast_kind kind, src_loc loc, ast_node *a, ast_node *b, ast_node *c)
{
    ast_node *n = ast_new(kind, loc);
    n->a = a;
    n->b = b;
    n->c = c;
    return n;
}

ast_node *ast_binary(src_loc loc, int op, ast_node *l, ast_node *r)
{
    ast_node *n = ast_make(AST_BINARY, loc, l, r, NULL);
    n->op = op;
    return n;
}

ast_node *ast_unary(src_loc loc, int op, ast_node *a)
{
    ast_node *n = ast_make(AST_UNARY, loc, a, NULL, NULL);
    n->op = op;
    return n;
}

ast_node *ast_call(src_loc loc, const char *name, ast_list args)
{
    ast_node *n = ast_named(AST_CALL, loc, name, NULL);
    n->kids = args;
    return n;
}

ast_node *ast_index(src_loc loc, ast_node *base, ast_list items)
{
    ast_node *n = ast_make(AST_INDEX, loc, base, NULL, NULL);
    n->kids = items;
    return n;
}

ast_node *ast_range(src_loc loc, const char *name, ast_node *lo, ast_node *hi)
{
    ast_node *n = ast_named(AST_RANGE, loc, name, lo);
    n->b = hi;
    return n;
}

ast_node *ast_sum(src_loc loc, ast_node *range, ast_node *where, ast_node *body)
{
    ast_node *n = ast_make(AST_SUM, loc, where, body, NULL);
    ast_push(&n->ranges, range);
    return n;
}

ast_node *ast_for(src_loc loc, ast_node *range, ast_node *body)
{
    ast_node *n = ast_make(AST_FOR, loc, NULL, body, NULL);
    ast_push(&n->ranges, range);
    return n;
}

ast_node *ast_list_node(ast_kind kind, src_loc loc, ast_list kids)
{
    ast_node *n = ast_new(kind, loc);
    n->kids = kids;
    return n;
}

ast_node *ast_model(src_loc loc, const char *name, ast_list items)
{
    ast_node *n = ast_list_node(AST_MODEL, loc, items);
    n->name = name;
    return n;
}

ast_node *ast_def(ast_kind kind, src_loc loc, const char *name, ast_list params, ast_node *a,
                  ast_node *b)
{
    ast_node *n = ast_make(kind, loc, a, b, NULL);
    n->name = name;
    n->params = params;
    return n;
}

ast_node *ast_weight_decl(src_loc loc, const char *name, ast_list shape, ast_node *source,
                          ast_node *cond)
{
    ast_node *n = ast_named(AST_WEIGHT_DECL, loc, name, cond);
    n->kids = shape;
    if (source->kind == AST_STRING)   /* the tensor's name: the usual binding */
        n->str = source->str;
    else
        n->b = source;
    return n;
}

ast_node *ast_weight_for(src_loc loc, ast_list ranges, ast_node *cond, ast_node *body)
{
    ast_node *n = ast_make(AST_WEIGHT_FOR, loc, cond, body, NULL);
    n->ranges = ranges;
    return n;
}

ast_node *ast_assert(src_loc loc, ast_node *cond, const char *message)
{
    ast_node *n = ast_make(AST_ASSERT, loc, cond, NULL, NULL);
    n->str = message;
    return n;
}
