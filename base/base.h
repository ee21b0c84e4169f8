/* base.h - what every part of kiln shares: source files and locations, diagnostics, one
 * arena for long-lived allocations, and interned strings.
 *
 * The front end, the IR, the passes, the code generator and the weight readers all report
 * through these functions, so that every message has the same form and names its place.
 *
 * Files: diag.c (diagnostics, reading source files), arena.c (the arena, interning),
 * outfile.c (output files).
 */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---------------------------------------------------------------- source locations */

typedef struct src_file {
    const char *path;   /* as given on the command line, used in messages */
    const char *text;   /* whole file, NUL-terminated */
    size_t len;
} src_file;

typedef struct src_loc {
    const src_file *file;
    int line, col;      /* 1-based */
    int len;            /* length of the token (for the caret run), >= 1 */
} src_loc;

/* ---------------------------------------------------------------- diagnostics (diag.c)
 *
 * Messages look like a C compiler's:
 *   dsmoe.kiln:12:17: error: shape mismatch: [64] vs [256]
 *      12 |     out = h + linear(v, up[l])
 *         |                 ^~~~~~~~~~~~~
 * diag_error never exits: it counts, and callers stop at the end of a phase.
 */
void diag_error(src_loc at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_note(src_loc at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_verror(src_loc at, const char *fmt, va_list ap);
/* An error about a file as a whole or a place in it without source text (weight files). */
void diag_file_error(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int diag_error_count(void);
/* Warnings: `file:line:col: warning: ...` with the source line and caret (or `path:
 * warning: ...`). The mode is set once from the command line: DIAG_WARN prints them,
 * DIAG_NO_WARN (-w) drops them, DIAG_WERROR (-Werror) prints them as errors and counts them
 * as errors. diag_warning_count() counts those printed or turned into errors. */
enum { DIAG_WARN, DIAG_NO_WARN, DIAG_WERROR };
void diag_set_warnings(int mode);
void diag_warning(src_loc at, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_file_warning(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int diag_warning_count(void);
void diag_reset(void);
/* Internal compiler bug: prints where and aborts. */
_Noreturn void kiln_die(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define DIE(...) kiln_die(__FILE__, __LINE__, __VA_ARGS__)

/* Read a whole file into a src_file (diagnoses and returns 0 on failure). */
int src_file_read(src_file *out, const char *path);
/* Use an in-memory text as a source file (the built-in standard library). */
void src_file_from_string(src_file *out, const char *path, const char *text);

/* ---------------------------------------------------------------- arena and interning (arena.c)
 *
 * Allocations that live until the end of the run (syntax trees, names, IR strings) come from
 * one arena and are released together by base_free_all(). Interned strings are unique:
 * equal text gives the same pointer, so names compare with ==.
 */
void *base_alloc(size_t size);               /* zeroed, max-aligned; never NULL */
const char *base_intern(const char *s, size_t len);
const char *base_intern_str(const char *s);  /* base_intern(s, strlen(s)) */
void base_free_all(void);

/* ---------------------------------------------------------------- output files (outfile.c)
 *
 * Every file kiln writes goes through these. A regular file or a new path is written to a
 * temporary in the same folder, renamed onto the path by outfile_commit (no partial output;
 * on failure an existing file is left untouched). A path that exists and is not a regular
 * file (a character device such as /dev/null, a FIFO) is written directly: never renamed
 * onto nor unlinked. With OUTFILE_STDOUT, "-" is standard output. Errors are diagnosed
 * (diag_file_error) and the functions return 0 or -1.
 */
enum { OUTFILE_STREAM = 1,   /* also open a FILE (o->f) for stdio writes */
       OUTFILE_STDOUT = 2 }; /* "-" means standard output */

typedef struct outfile {
    const char *path;   /* the target, as given */
    char *tmp;          /* the temporary renamed onto path at commit; NULL when direct */
    int fd;             /* where to write (with OUTFILE_STREAM, f's descriptor) */
    FILE *f;            /* with OUTFILE_STREAM (or for "-"), else NULL */
    int is_stdout;
    int slot;           /* tmp's entry among the temporaries (tmp_register), or -1 */
} outfile;

/* mode: the permissions of the file that replaces or creates the path (0644, 0755). */
int outfile_open(outfile *o, const char *path, int mode, int flags);
int outfile_write(outfile *o, const void *p, size_t n);   /* through f if open, else fd */
int outfile_copy_from(outfile *o, const char *src);        /* appends the bytes of src */
int outfile_commit(outfile *o);   /* closes, then renames the temporary onto the path */
void outfile_abort(outfile *o);   /* closes; removes the temporary (never the target) */

/* ---------------------------------------------------------------- temporaries (outfile.c)
 *
 * What a build makes on the way (its folders under $TMPDIR, files in them, temporaries beside
 * its outputs) is registered here, so that an error path and an interruption alike leave
 * nothing: after tmp_install_handlers, SIGINT, SIGTERM and SIGHUP kill the child process
 * running (its whole process group: the C compiler and what it starts) and wait for it,
 * remove every registered path (latest first: files before their folder), then end kiln
 * by the same signal. The handler only calls kill, waitpid, unlink and rmdir. Registered
 * paths are copied; a full table (tmp_register returns -1) only loses that protection.
 */
const char *tmp_folder(void);                   /* $TMPDIR when set and not empty, else /tmp */
int tmp_register(const char *path, int is_dir);  /* a slot, or -1 */
void tmp_forget(int slot);                       /* the path is kept or gone: -1 is ignored */
void tmp_install_handlers(void);
/* fork() for a child the handler must stop: signals held while it starts, the child in a
 * process group of its own (so that a signal meant for kiln reaches it through the handler,
 * and through it the compiler's own children); tmp_wait reaps it. */
int tmp_fork(void);
int tmp_wait(int pid, int *status);              /* waitpid, EINTR retried; 0 or -1 */
/* KILN_TEST_PAUSE=stage (tests only): at that stage, say so on stderr and sleep (up to a
 * minute) so that a test can interrupt kiln there. Stages: "pack" (before a blob is written). */
void tmp_test_pause(const char *stage);

#endif
