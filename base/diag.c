/* diag.c - error messages in the style of a C compiler, and reading source files.
 *
 *   tests/diag/foo.kiln:3:13: error: unterminated string
 *       3 |   param x = "oops
 *         |             ^~~~~
 *
 * The caret line copies tabs from the source line so that the caret lines up in any terminal.
 * diag_error counts and returns; each phase checks diag_error_count() when it is done.
 * Unrolled loops would repeat one mistake per iteration: an error already printed (same
 * place, same text) is counted but not printed again, nor are the notes that follow it;
 * a repeated warning is neither printed nor counted.
 */
#include "../base/base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int error_count;
static char *seen[256];   /* errors printed so far, as "path:line:col:message" */
static int nseen, muted;

int diag_error_count(void) { return error_count; }
void diag_reset(void)
{
    error_count = 0;
    muted = 0;
    while (nseen > 0)
        free(seen[--nseen]);
}

/* Prints the source line of `at` and a caret run under the token. */
static void show_source(src_loc at)
{
    const char *p = at.file->text, *end = at.file->text + at.file->len;
    for (int line = 1; line < at.line && p < end; p++)
        if (*p == '\n')
            line++;
    const char *eol = p;
    while (eol < end && *eol != '\n')
        eol++;
    int n = (int)(eol - p);
    if (n > 0 && p[n - 1] == '\r')
        n--;
    fprintf(stderr, "%5d | %.*s\n", at.line, n, p);
    fprintf(stderr, "      | ");
    int col = at.col > 0 ? at.col - 1 : 0;   /* 0-based column of the caret */
    for (int i = 0; i < col; i++)
        fputc(i < n && p[i] == '\t' ? '\t' : ' ', stderr);
    fputc('^', stderr);
    for (int i = col + 1; i < col + at.len && i < n; i++)
        fputc('~', stderr);
    fputc('\n', stderr);
}

static void report(const char *kind, src_loc at, const char *fmt, va_list ap)
{
    if (at.file)
        fprintf(stderr, "%s:%d:%d: %s: ", at.file->path, at.line, at.col, kind);
    else
        fprintf(stderr, "kiln: %s: ", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (at.file && at.file->text && at.line > 0)
        show_source(at);
}

/* "path:line:col:message" in a malloc'ed string (NULL if out of memory): sized by a first
 * pass, since paths and messages have no length limit. */
static char *error_key(src_loc at, const char *fmt, va_list ap)
{
    const char *path = at.file ? at.file->path : "";
    va_list copy;
    va_copy(copy, ap);
    int nm = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    int np = snprintf(NULL, 0, "%s:%d:%d:", path, at.line, at.col);
    if (nm < 0 || np < 0)
        return NULL;
    size_t size = (size_t)np + (size_t)nm + 1;
    char *key = malloc(size);
    if (!key)
        return NULL;
    snprintf(key, size, "%s:%d:%d:", path, at.line, at.col);
    va_copy(copy, ap);
    vsnprintf(key + np, size - (size_t)np, fmt, copy);
    va_end(copy);
    return key;
}

/* 1 if this error was printed before (then notes are muted until the next new error). */
static int already_reported(src_loc at, const char *fmt, va_list ap)
{
    char *key = error_key(at, fmt, ap);
    if (!key)
        return muted = 0;   /* cannot compare: print it */
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], key) == 0) {
            free(key);
            return muted = 1;
        }
    muted = 0;
    if (nseen < 256)
        seen[nseen++] = key;
    else
        free(key);
    return 0;
}

void diag_verror(src_loc at, const char *fmt, va_list ap)
{
    error_count++;
    if (!already_reported(at, fmt, ap))
        report("error", at, fmt, ap);
}

void diag_error(src_loc at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_verror(at, fmt, ap);
    va_end(ap);
}

void diag_note(src_loc at, const char *fmt, ...)
{
    if (muted)
        return;
    va_list ap;
    va_start(ap, fmt);
    report("note", at, fmt, ap);
    va_end(ap);
}

static int warn_mode = DIAG_WARN, warning_count;

void diag_set_warnings(int mode) { warn_mode = mode; }
int diag_warning_count(void) { return warning_count; }

void diag_warning(src_loc at, const char *fmt, ...)
{
    if (warn_mode == DIAG_NO_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (warn_mode == DIAG_WERROR) {
        warning_count++;
        diag_verror(at, fmt, ap);   /* -Werror: an error like any other (deduplicated there) */
    } else if (!already_reported(at, fmt, ap)) {   /* unrolled loops repeat warnings too */
        warning_count++;
        report("warning", at, fmt, ap);
    }
    va_end(ap);
}

void diag_file_warning(const char *path, const char *fmt, ...)
{
    if (warn_mode == DIAG_NO_WARN)
        return;
    va_list ap;
    va_start(ap, fmt);
    warning_count++;
    if (warn_mode == DIAG_WERROR)
        error_count++;
    fprintf(stderr, "%s: %s: ", path, warn_mode == DIAG_WERROR ? "error" : "warning");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void diag_file_error(const char *path, const char *fmt, ...)
{
    va_list ap;
    error_count++;
    fprintf(stderr, "%s: error: ", path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

_Noreturn void kiln_die(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "kiln: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---------------------------------------------------------------- source files */

/* A text input over KILN_MAX_SOURCE_BYTES: refused before it is read (or, from a pipe,
 * as soon as the limit is passed). */
static int too_large(const char *path, FILE *f, char *buf)
{
    diag_file_error(path, "the file is larger than %lld bytes (16 MiB), the limit for a spec, "
                    "an IR dump or a token list", (long long)KILN_MAX_SOURCE_BYTES);
    free(buf);
    fclose(f);
    return 0;
}

int src_file_read(src_file *out, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_file_error(path, "cannot read: %s", strerror(errno));
        return 0;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > KILN_MAX_SOURCE_BYTES)
        return too_large(path, f, NULL);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf)
            DIE("out of memory");
        len += fread(buf + len, 1, cap - len - 1, f);
        if (len > (size_t)KILN_MAX_SOURCE_BYTES)
            return too_large(path, f, buf);
        if (len < cap - 1)
            break;
        cap *= 2;
        buf = realloc(buf, cap);
    }
    if (ferror(f)) {
        int err = errno;
        diag_file_error(path, "cannot read: %s", strerror(err));
        free(buf);
        fclose(f);
        return 0;
    }
    fclose(f);
    buf[len] = '\0';
    out->path = path;
    out->text = buf;   /* lives as long as the program: trees point into it */
    out->len = len;
    return 1;
}

void src_file_from_string(src_file *out, const char *path, const char *text)
{
    out->path = path;
    out->text = text;
    out->len = strlen(text);
}
