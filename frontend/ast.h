/* ast.h - the syntax tree of a kiln spec, and the diagnostics that point into it.
 *
 * The grammar (frontend/parser.y) builds these nodes with one call per action; the semantic
 * pass (frontend/sema.c) walks them, evaluates everything that is known at compile time and
 * emits IR for the rest. Nodes are allocated from one arena and freed together.
 *
 * Every node has a kind, a source location and up to a list of children. The meaning of the
 * fields per kind is listed next to each enum member.
 */
#ifndef KILN_AST_H
#define KILN_AST_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

/* ---------------------------------------------------------------- nodes */

typedef enum ast_kind {
    /* top level */
    AST_SPEC,        /* kids: items (AST_MODEL, AST_BLOCK, AST_DEF) of this file */
    AST_MODEL,       /* name; kids: items (PARAM_DECL, LET, WEIGHTS, DEF, BLOCK, FORWARD) */
    AST_PARAM,       /* name; a = default value expr; flag = 1 for `runtime param` */
    AST_LET,         /* name; a = expr (a derived compile-time constant, not overridable) */
    AST_DEF,         /* name; params; a = expr (compile-time function: def leader(l) = ...) */
    AST_BLOCK,       /* name; params; b = body (AST_STMTS) */
    AST_FORWARD,     /* params (the token input name); b = body */
    AST_WEIGHTS,     /* kids: WEIGHT_DECL and WEIGHT_FOR */
    AST_WEIGHT_DECL, /* name; kids = shape exprs; str = checkpoint name template, or NULL
                        and b = the source expression (a slice of another weight,
                        transpose(...)); a = optional condition (`if expr`) or NULL */
    AST_WEIGHT_FOR,  /* ranges = list of AST_RANGE; a = optional condition; b = AST_WEIGHTS body */
    AST_RANGE,       /* name (the loop variable); a = low expr; b = high expr (exclusive) */

    /* statements */
    AST_STMTS,       /* kids: statements */
    AST_ASSIGN,      /* a = target (AST_NAME or AST_INDEX of a name); b = value */
    AST_FOR,         /* ranges (one AST_RANGE); b = body */
    AST_IF,          /* a = condition; b = then (AST_STMTS); c = else (AST_STMTS, AST_IF, or NULL) */
    AST_RETURN,      /* a = value */
    AST_STAT,        /* a = target (AST_NAME or AST_INDEX); b = value: `stat name[l] = expr` */
    AST_ASSERT,      /* a = condition; str = message: `assert cond, "message"` (also a model item) */

    /* expressions */
    AST_INT,         /* ival */
    AST_FLOAT,       /* fval (text in str, as written) */
    AST_STRING,      /* str (escapes resolved) */
    AST_NAME,        /* name */
    AST_BINARY,      /* op = token code of the operator (see ast_op); a, b */
    AST_UNARY,       /* op (AST_OP_NEG or AST_OP_NOT); a */
    AST_COND,        /* a ? b : c */
    AST_CALL,        /* name = callee; kids = arguments */
    AST_INDEX,       /* a = base; kids = index items (expr, or AST_SLICE) */
    AST_SLICE,       /* a = low or NULL; b = high or NULL (`:` alone has both NULL) */
    AST_SUM,         /* ranges (one AST_RANGE); a = optional `where` condition; b = body expr */
    AST_LIST,        /* kids: items: `[a, b, c]` */
} ast_kind;

typedef enum ast_op {
    AST_OP_ADD, AST_OP_SUB, AST_OP_MUL, AST_OP_DIV, AST_OP_MOD,
    AST_OP_LT, AST_OP_GT, AST_OP_LE, AST_OP_GE, AST_OP_EQ, AST_OP_NE,
    AST_OP_AND, AST_OP_OR,
    AST_OP_NEG, AST_OP_NOT,
} ast_op;

typedef struct ast_node ast_node;

typedef struct ast_list {
    ast_node **v;
    int n, cap;
} ast_list;

struct ast_node {
    ast_kind kind;
    src_loc loc;          /* the node's own token: the name, the operator, the literal */
    const char *name;     /* identifiers (interned in the arena) */
    const char *str;      /* string literal / checkpoint template / float text */
    int64_t ival;
    double fval;
    int op;               /* ast_op for AST_BINARY / AST_UNARY */
    int flag;             /* AST_PARAM: runtime */
    int mark;             /* sema: AST_ASSIGN of a tensor: 1 assigned, 2 also read somewhere */
    ast_node *a, *b, *c;
    ast_list kids;        /* arguments, statements, items, shape dims, index items */
    ast_list params;      /* AST_DEF / AST_BLOCK / AST_FORWARD parameter names (AST_NAME nodes) */
    ast_list ranges;      /* AST_FOR / AST_WEIGHT_FOR / AST_SUM: AST_RANGE nodes */
};

/* ast.c: construction (one call per grammar action) */
ast_node *ast_new(ast_kind kind, src_loc loc);
void ast_push(ast_list *list, ast_node *node);
const char *ast_kind_name(ast_kind kind);
const char *ast_op_text(int op);   /* "+", "<=", "&&", "-" (neg), "!" ... */

/* ast.c: builders, one per grammar action (parser.y). Lists are passed and returned by value:
 * `$$ = ast_list_add($1, $3)`. Locations follow the rule above: the node's own token (a call or
 * an index starts at its name/base and, when it fits on one line, runs to its closing bracket). */
ast_list ast_list_add(ast_list list, ast_node *node);
ast_list ast_list_params(ast_list items, ast_list params, int runtime); /* append, set flag */
ast_node *ast_int(src_loc loc, int64_t value);
ast_node *ast_float(src_loc loc, const char *text);
ast_node *ast_string(src_loc loc, const char *s);
ast_node *ast_name(src_loc loc, const char *name);
ast_node *ast_named(ast_kind kind, src_loc loc, const char *name, ast_node *a); /* PARAM, LET */
ast_node *ast_make(ast_kind kind, src_loc loc, ast_node *a, ast_node *b, ast_node *c);
ast_node *ast_binary(src_loc loc, int op, ast_node *l, ast_node *r);
ast_node *ast_unary(src_loc loc, int op, ast_node *a);
ast_node *ast_call(src_loc loc, const char *name, ast_list args);
ast_node *ast_index(src_loc loc, ast_node *base, ast_list items);
ast_node *ast_range(src_loc loc, const char *name, ast_node *lo, ast_node *hi);
ast_node *ast_sum(src_loc loc, ast_node *range, ast_node *where, ast_node *body);
ast_node *ast_for(src_loc loc, ast_node *range, ast_node *body);
ast_node *ast_list_node(ast_kind kind, src_loc loc, ast_list kids); /* SPEC, STMTS, WEIGHTS */
ast_node *ast_model(src_loc loc, const char *name, ast_list items);
ast_node *ast_def(ast_kind kind, src_loc loc, const char *name, ast_list params, ast_node *a,
                  ast_node *b);                                     /* DEF, BLOCK, FORWARD */
ast_node *ast_weight_decl(src_loc loc, const char *name, ast_list shape, ast_node *source,
                          ast_node *cond);
ast_node *ast_assert(src_loc loc, ast_node *cond, const char *message);
ast_node *ast_weight_for(src_loc loc, ast_list ranges, ast_node *cond, ast_node *body);

/* parse.c glue (lexer.l + parser.y): parse one file. Returns the AST_SPEC root, or NULL after
 * reporting errors through diag_*. `file` must outlive the tree. */
ast_node *parse_file(const src_file *file);

#endif
