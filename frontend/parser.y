/* parser.y - the kiln grammar (bison >= 3.8): tokens from lexer.l in, an AST (ast.h) out.
 *
 * A pure parser: its state is the scanner handle plus a struct parse_state. Each action is one
 * call into an ast.c builder. Operator precedence is declared below, lowest first; a `sum`
 * body reaches as far right as it can, like a lambda. The first syntax error is reported with
 * what was expected (computed exactly with LAC) and stops the parse.
 */
%require "3.8"
%define api.pure full
%define api.prefix {kiln_yy}
%define api.token.prefix {T_}
%define parse.error custom
%define parse.lac full
%locations
%param {yyscan_t scanner}
%parse-param {struct parse_state *ps}
%expect 0

%code requires {
#include "ast.h"

#ifndef YY_TYPEDEF_YY_SCANNER_T
#define YY_TYPEDEF_YY_SCANNER_T
typedef void *yyscan_t;
#endif

enum { PARSE_MAX_DEPTH = 64 };

/* One parse_file call: shared by the scanner (as its "extra") and the parser. */
struct parse_state {
    const src_file *file;
    int line, col;           /* scanner position: where the next match starts */
    int end_line, end_col;   /* just past the last token (where "end of file" is reported) */
    ast_node *root;          /* the AST_SPEC, once parsed */
    int depth;               /* brackets open: '{' '(' '[' (for "to match this" at EOF) */
    src_loc open[PARSE_MAX_DEPTH];
    char open_char[PARSE_MAX_DEPTH];
};
}

%code provides {
int kiln_yylex(KILN_YYSTYPE *lval, KILN_YYLTYPE *lloc, yyscan_t scanner);
/* Bison locations to src_loc: one token, or first..last when they sit on one line. */
src_loc parse_loc(const struct parse_state *ps, KILN_YYLTYPE l);
src_loc parse_span(const struct parse_state *ps, KILN_YYLTYPE first, KILN_YYLTYPE last);
}

%code {
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOC(l) parse_loc(ps, (l))
#define SPAN(a, b) parse_span(ps, (a), (b))
#define NOLIST ((ast_list){0})
/* bison's stack grows on the heap up to this many entries (base/limits.h) */
#define YYMAXDEPTH KILN_MAX_PARSE_DEPTH

static void kiln_yyerror(const KILN_YYLTYPE *loc, yyscan_t scanner, struct parse_state *ps,
                         const char *msg);
}

%union {
    int64_t ival;
    const char *str;   /* identifier (interned), string literal (escapes resolved), float text */
    ast_node *node;
    ast_list list;
}

%token MODEL "'model'" PARAM "'param'" RUNTIME "'runtime'" LET "'let'" DEF "'def'"
%token BLOCK "'block'" FORWARD "'forward'" WEIGHTS "'weights'" FOR "'for'" IN "'in'"
%token IF "'if'" ELSE "'else'" RETURN "'return'" STAT "'stat'" SUM "'sum'" WHERE "'where'"
%token TRUE "'true'" FALSE "'false'" ASSERT "'assert'"
%token <str> IDENT "identifier"
%token <ival> INT "integer"
%token <str> FLOAT "number"
%token <str> STRING "string"
%token DOTDOT "'..'" OROR "'||'" ANDAND "'&&'" EQ "'=='" NE "'!='" LE "'<='" GE "'>='"

%nterm <node> item model model_item param def block forward weights witem wbody range
%nterm <node> body stmt if_stmt lvalue name expr postfix primary index_item opt_expr
%nterm <node> opt_cond opt_where assert
%nterm <list> items model_items plist names opt_names witems ranges stmts exprs opt_exprs
%nterm <list> index_items

/* Precedence, lowest first. SUMBODY is the `sum ... : body` rule: lower than every operator,
 * so the body takes all that follows. ':' shares the level of '?' for `c ? a : b`. */
%precedence SUMBODY
%right '?' ':'
%left OROR
%left ANDAND
%left EQ NE
%left '<' '>' LE GE
%left '+' '-'
%left '*' '/' '%'
%precedence UNARY

%%

/* spec : item*   (an optional ';' may end any item or statement) */
spec
    : items                                 { ps->root = ast_list_node(AST_SPEC, (src_loc){ps->file, 1, 1, 1}, $1); }
    ;
items
    : %empty                                { $$ = NOLIST; }
    | items item                            { $$ = ast_list_add($1, $2); }
    | items ';'
    ;
/* item : model | block | def */
item
    : model
    | block
    | def
    ;

/* model : 'model' IDENT '{' model_item* '}' */
model
    : MODEL IDENT '{' model_items '}'       { $$ = ast_model(LOC(@2), $2, $4); }
    ;
model_items
    : %empty                                { $$ = NOLIST; }
    | model_items PARAM plist               { $$ = ast_list_params($1, $3, 0); }
    | model_items RUNTIME PARAM plist       { $$ = ast_list_params($1, $4, 1); }
    | model_items model_item                { $$ = ast_list_add($1, $2); }
    | model_items ';'
    ;
/* model_item : 'let' IDENT '=' expr | assert | def | block | weights | forward */
model_item
    : LET IDENT '=' expr                    { $$ = ast_named(AST_LET, LOC(@2), $2, $4); }
    | assert
    | def
    | block
    | weights
    | forward
    ;
/* plist : IDENT '=' expr (',' IDENT '=' expr)* */
plist
    : param                                 { $$ = ast_list_add(NOLIST, $1); }
    | plist ',' param                       { $$ = ast_list_add($1, $3); }
    ;
param
    : IDENT '=' expr                        { $$ = ast_named(AST_PARAM, LOC(@1), $1, $3); }
    ;

/* def : 'def' IDENT '(' names? ')' '=' expr */
def
    : DEF IDENT '(' opt_names ')' '=' expr  { $$ = ast_def(AST_DEF, LOC(@2), $2, $4, $7, NULL); }
    ;
/* block : 'block' IDENT '(' names? ')' '{' stmts '}' */
block
    : BLOCK IDENT '(' opt_names ')' body    { $$ = ast_def(AST_BLOCK, LOC(@2), $2, $4, NULL, $6); }
    ;
/* forward : 'forward' '(' names? ')' '{' stmts '}' */
forward
    : FORWARD '(' opt_names ')' body        { $$ = ast_def(AST_FORWARD, LOC(@1), NULL, $3, NULL, $5); }
    ;
/* names : IDENT (',' IDENT)* */
opt_names
    : %empty                                { $$ = NOLIST; }
    | names
    ;
names
    : name                                  { $$ = ast_list_add(NOLIST, $1); }
    | names ',' name                        { $$ = ast_list_add($1, $3); }
    ;
name
    : IDENT                                 { $$ = ast_name(LOC(@1), $1); }
    ;

/* weights : 'weights' '{' witem* '}' */
weights
    : WEIGHTS '{' witems '}'                { $$ = ast_list_node(AST_WEIGHTS, LOC(@1), $3); }
    ;
witems
    : %empty                                { $$ = NOLIST; }
    | witems witem                          { $$ = ast_list_add($1, $2); }
    | witems ';'
    ;
/* witem : IDENT '[' exprs? ']' '=' source ('if' expr)?
 *       | 'for' ranges ('if' expr)? '{' witem* '}'
 * source: a STRING (the tensor's name), a slice of a weight declared before, or transpose()
 * of either; an expression here, which sema_weights.c checks is one of those. */
witem
    : IDENT '[' opt_exprs ']' '=' expr opt_cond
                                            { $$ = ast_weight_decl(LOC(@1), $1, $3, $6, $7); }
    | FOR ranges opt_cond wbody             { $$ = ast_weight_for(LOC(@1), $2, $3, $4); }
    ;
wbody
    : '{' witems '}'                        { $$ = ast_list_node(AST_WEIGHTS, LOC(@1), $2); }
    ;
opt_cond
    : %empty                                { $$ = NULL; }
    | IF expr                               { $$ = $2; }
    ;
/* ranges : range (',' range)* */
ranges
    : range                                 { $$ = ast_list_add(NOLIST, $1); }
    | ranges ',' range                      { $$ = ast_list_add($1, $3); }
    ;
/* range : IDENT 'in' expr '..' expr */
range
    : IDENT IN expr DOTDOT expr             { $$ = ast_range(LOC(@1), $1, $3, $5); }
    ;

/* stmts : stmt*   (in braces; an optional ';' may end a statement) */
body
    : '{' stmts '}'                         { $$ = ast_list_node(AST_STMTS, LOC(@1), $2); }
    ;
stmts
    : %empty                                { $$ = NOLIST; }
    | stmts stmt                            { $$ = ast_list_add($1, $2); }
    | stmts ';'
    ;
/* stmt : lvalue '=' expr | 'let' IDENT '=' expr | 'for' range '{' stmts '}' | if_stmt
 *      | 'return' expr | 'stat' lvalue '=' expr | assert */
stmt
    : lvalue '=' expr                       { $$ = ast_make(AST_ASSIGN, LOC(@2), $1, $3, NULL); }
    | LET name '=' expr                     { $$ = ast_make(AST_ASSIGN, LOC(@3), $2, $4, NULL); }
    | FOR range body                        { $$ = ast_for(LOC(@1), $2, $3); }
    | if_stmt
    | RETURN expr                           { $$ = ast_make(AST_RETURN, LOC(@1), $2, NULL, NULL); }
    | STAT lvalue '=' expr                  { $$ = ast_make(AST_STAT, LOC(@1), $2, $4, NULL); }
    | assert
    ;
/* assert : 'assert' expr ',' STRING   (checked at compile time) */
assert
    : ASSERT expr ',' STRING                { $$ = ast_assert(SPAN(@1, @4), $2, $4); }
    ;
/* if_stmt : 'if' expr '{' stmts '}' ('else' ('{' stmts '}' | if_stmt))? */
if_stmt
    : IF expr body                          { $$ = ast_make(AST_IF, LOC(@1), $2, $3, NULL); }
    | IF expr body ELSE body                { $$ = ast_make(AST_IF, LOC(@1), $2, $3, $5); }
    | IF expr body ELSE if_stmt             { $$ = ast_make(AST_IF, LOC(@1), $2, $3, $5); }
    ;
/* lvalue : IDENT | IDENT '[' exprs ']' */
lvalue
    : name
    | name '[' exprs ']'                    { $$ = ast_index(SPAN(@1, @4), $1, $3); }
    ;

/* expr : expr '?' expr ':' expr | expr binop expr | ('-' | '!') expr
 *      | 'sum' range ('where' expr)? ':' expr | postfix
 * A sum can stand wherever an operand can (a * sum ...) and its body takes all that follows. */
expr
    : expr '?' expr ':' expr                { $$ = ast_make(AST_COND, LOC(@2), $1, $3, $5); }
    | expr OROR expr                        { $$ = ast_binary(LOC(@2), AST_OP_OR, $1, $3); }
    | expr ANDAND expr                      { $$ = ast_binary(LOC(@2), AST_OP_AND, $1, $3); }
    | expr EQ expr                          { $$ = ast_binary(LOC(@2), AST_OP_EQ, $1, $3); }
    | expr NE expr                          { $$ = ast_binary(LOC(@2), AST_OP_NE, $1, $3); }
    | expr '<' expr                         { $$ = ast_binary(LOC(@2), AST_OP_LT, $1, $3); }
    | expr '>' expr                         { $$ = ast_binary(LOC(@2), AST_OP_GT, $1, $3); }
    | expr LE expr                          { $$ = ast_binary(LOC(@2), AST_OP_LE, $1, $3); }
    | expr GE expr                          { $$ = ast_binary(LOC(@2), AST_OP_GE, $1, $3); }
    | expr '+' expr                         { $$ = ast_binary(LOC(@2), AST_OP_ADD, $1, $3); }
    | expr '-' expr                         { $$ = ast_binary(LOC(@2), AST_OP_SUB, $1, $3); }
    | expr '*' expr                         { $$ = ast_binary(LOC(@2), AST_OP_MUL, $1, $3); }
    | expr '/' expr                         { $$ = ast_binary(LOC(@2), AST_OP_DIV, $1, $3); }
    | expr '%' expr                         { $$ = ast_binary(LOC(@2), AST_OP_MOD, $1, $3); }
    | '-' expr %prec UNARY                  { $$ = ast_unary(LOC(@1), AST_OP_NEG, $2); }
    | '!' expr %prec UNARY                  { $$ = ast_unary(LOC(@1), AST_OP_NOT, $2); }
    | SUM range opt_where ':' expr %prec SUMBODY
                                            { $$ = ast_sum(LOC(@1), $2, $3, $5); }
    | postfix
    ;
/* postfix : primary ('[' index_item (',' index_item)* ']')* */
postfix
    : primary
    | postfix '[' index_items ']'           { $$ = ast_index(SPAN(@1, @4), $1, $3); }
    ;
index_items
    : index_item                            { $$ = ast_list_add(NOLIST, $1); }
    | index_items ',' index_item            { $$ = ast_list_add($1, $3); }
    ;
/* index_item : expr | expr? ':' expr? */
index_item
    : expr
    | opt_expr ':' opt_expr                 { $$ = ast_make(AST_SLICE, LOC(@2), $1, $3, NULL); }
    ;
opt_expr
    : %empty                                { $$ = NULL; }
    | expr
    ;
/* primary : INT | FLOAT | STRING | 'true' | 'false' | IDENT | IDENT '(' exprs? ')' | '(' expr ')'
 *         | '[' exprs? ']'   (a compile-time list) */
primary
    : INT                                   { $$ = ast_int(LOC(@1), $1); }
    | TRUE                                  { $$ = ast_int(LOC(@1), 1); }
    | FALSE                                 { $$ = ast_int(LOC(@1), 0); }
    | FLOAT                                 { $$ = ast_float(LOC(@1), $1); }
    | STRING                                { $$ = ast_string(LOC(@1), $1); }
    | name
    | IDENT '(' opt_exprs ')'               { $$ = ast_call(SPAN(@1, @4), $1, $3); }
    | '(' expr ')'                          { $$ = $2; }
    | '[' opt_exprs ']'                     { $$ = ast_list_node(AST_LIST, SPAN(@1, @3), $2); }
    ;
opt_where
    : %empty                                { $$ = NULL; }
    | WHERE expr                            { $$ = $2; }
    ;
opt_exprs
    : %empty                                { $$ = NOLIST; }
    | exprs
    ;
exprs
    : expr                                  { $$ = ast_list_add(NOLIST, $1); }
    | exprs ',' expr                        { $$ = ast_list_add($1, $3); }
    ;

%%

src_loc parse_loc(const struct parse_state *ps, KILN_YYLTYPE l)
{
    int len = l.last_line == l.first_line ? l.last_column - l.first_column : 1;
    return (src_loc){ ps->file, l.first_line, l.first_column, len > 0 ? len : 1 };
}

src_loc parse_span(const struct parse_state *ps, KILN_YYLTYPE first, KILN_YYLTYPE last)
{
    if (last.last_line == first.first_line)
        first.last_column = last.last_column;
    first.last_line = first.first_line;
    return parse_loc(ps, first);
}

/* Whether the parser, expecting token s, would take any expression there: then the expected
 * list says "expression" instead of naming every token an expression can start with. */
static int starts_expr(yysymbol_kind_t s)
{
    return s == YYSYMBOL_INT || s == YYSYMBOL_FLOAT || s == YYSYMBOL_STRING ||
           s == YYSYMBOL_IDENT || s == YYSYMBOL_TRUE || s == YYSYMBOL_FALSE ||
           s == YYSYMBOL_SUM || s == YYTRANSLATE('(') || s == YYTRANSLATE('[') ||
           s == YYTRANSLATE('-') || s == YYTRANSLATE('!');
}

/* Tokens that could continue a complete expression. Right after one, they are left out of the
 * expected list: "expected ']' or ','" says more than a list of every operator. */
static int continues_expr(yysymbol_kind_t s)
{
    static const int ops[] = { '?', '<', '>', '+', '-', '*', '/', '%', '(', '[' };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (s == YYTRANSLATE(ops[i]))
            return 1;
    return s == YYSYMBOL_OROR || s == YYSYMBOL_ANDAND || s == YYSYMBOL_EQ ||
           s == YYSYMBOL_NE || s == YYSYMBOL_LE || s == YYSYMBOL_GE;
}

/* The source text of a one-line token. */
static const char *token_text(const struct parse_state *ps, src_loc at)
{
    const char *p = ps->file->text;
    for (int line = 1; line < at.line; p++)
        if (*p == '\n')
            line++;
    return p + at.col - 1;
}

/* A bounded string builder for the message. */
typedef struct { char s[512]; size_t n; } msgbuf;

static void put(msgbuf *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(msgbuf *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(m->s + m->n, sizeof m->s - m->n, fmt, ap);
    va_end(ap);
    if (k > 0)
        m->n = m->n + (size_t)k < sizeof m->s ? m->n + (size_t)k : sizeof m->s - 1;
}

/* "syntax error: unexpected '*', expected expression". The expected tokens come from LAC, so
 * they are exact; they are listed when there are few enough to help. */
static int yyreport_syntax_error(const yypcontext_t *ctx, yyscan_t scanner,
                                 struct parse_state *ps)
{
    (void)scanner;
    msgbuf m = { .n = 0 };
    yysymbol_kind_t got = yypcontext_token(ctx);
    src_loc at = parse_loc(ps, *yypcontext_location(ctx));
    put(&m, "syntax error: unexpected %s", yysymbol_name(got));
    if (got == YYSYMBOL_IDENT || got == YYSYMBOL_INT || got == YYSYMBOL_FLOAT)
        put(&m, " '%.*s'", at.len, token_text(ps, at));

    yysymbol_kind_t expected[YYNTOKENS];
    const char *names[YYNTOKENS + 1];
    int count = yypcontext_expected_tokens(ctx, expected, YYNTOKENS), k = 0;
    int any_expr = 0, after_expr = 0, want_name = 0;
    for (int i = 0; i < count; i++) {
        any_expr |= expected[i] == YYSYMBOL_INT;
        after_expr |= expected[i] == YYTRANSLATE('+');
        want_name |= expected[i] == YYSYMBOL_IDENT;
    }
    if (any_expr)
        names[k++] = "expression";
    for (int i = 0; i < count; i++) {
        yysymbol_kind_t s = expected[i];
        if (s == YYTRANSLATE(';') || (any_expr && starts_expr(s)) ||
            (after_expr && continues_expr(s)))
            continue;
        names[k++] = yysymbol_name(s);
    }
    if (k > 6 && got == YYSYMBOL_YYEOF && ps->depth > 0 && ps->depth <= PARSE_MAX_DEPTH) {
        /* at end of file, the closing bracket is the one worth naming */
        char open = ps->open_char[ps->depth - 1];
        int close = open == '{' ? '}' : open == '(' ? ')' : ']';
        for (int i = 0; i < count; i++) {
            if (expected[i] == YYTRANSLATE(close)) {
                names[0] = yysymbol_name(expected[i]);
                k = 1;
            }
        }
    }
    if (k > 0 && k <= 6) {   /* a longer list would not help */
        put(&m, ", expected ");
        for (int i = 0; i < k; i++)
            put(&m, "%s%s", i == 0 ? "" : i == k - 1 ? " or " : ", ", names[i]);
    }
    if (want_name && got >= YYSYMBOL_MODEL && got <= YYSYMBOL_ASSERT)
        put(&m, " (%s is a keyword, not a name)", yysymbol_name(got));
    diag_error(at, "%s", m.s);
    if (got == YYSYMBOL_YYEOF && ps->depth > 0 && ps->depth <= PARSE_MAX_DEPTH)
        diag_note(ps->open[ps->depth - 1], "to match this '%c'", ps->open_char[ps->depth - 1]);
    return 0;
}

static void kiln_yyerror(const KILN_YYLTYPE *loc, yyscan_t scanner, struct parse_state *ps,
                         const char *msg)
{
    (void)scanner;   /* with parse.error custom, only "memory exhausted" comes here */
    (void)msg;       /* it means YYMAXDEPTH was reached */
    diag_error(parse_loc(ps, *loc), "nested too deeply: more than %d brackets, operators and "
               "statements open at once", KILN_MAX_PARSE_DEPTH);
}
