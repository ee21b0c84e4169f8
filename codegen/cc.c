/* cc.c - compile the emitted C and link it with the runtime.
 *
 * The runtime is found beside the kiln executable (the build puts libkilnrt.a and include/
 * next to it), or in $KILN_RUNTIME_DIR. The C compiler is $CC, else cc. The emitted program
 * is built for baseline x86-64 so that it runs on any machine of the family; faster kernels
 * will pick their instruction set at run time. For the C library (codegen/library.c) it also
 * compiles objects alone and runs the binutils.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"

#ifndef KILN_PROGRAM_CFLAGS
#define KILN_PROGRAM_CFLAGS ""
#endif

static int runtime_dir(char *buf, size_t size)
{
    const char *env = getenv("KILN_RUNTIME_DIR");
    if (env && *env) {
        snprintf(buf, size, "%s", env);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", buf, size - 1);
    if (n <= 0) {
        fprintf(stderr, "kiln: error: cannot find the runtime: /proc/self/exe: %s\n",
                strerror(errno));
        return -1;
    }
    buf[n] = 0;
    char *slash = strrchr(buf, '/');
    if (slash)
        *slash = 0;
    return 0;
}

/* Runs argv, waits; returns its exit status or -1. */
static int run(char *const argv[], int verbose)
{
    if (verbose) {
        for (int i = 0; argv[i]; i++)
            fprintf(stderr, "%s%s", i ? " " : "", argv[i]);
        fputc('\n', stderr);
    }
    pid_t pid = tmp_fork();    /* an interrupted kiln stops it first (base/outfile.c) */
    if (pid < 0)
        return -1;
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "kiln: error: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status;
    if (tmp_wait(pid, &status) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The compiler and its flags for emitted C: $CC or cc, C11, -O2, the runtime's headers,
 * this kiln build's extra flags (the sanitizer build adds its own). Fills argv from 0 and
 * returns the count; inc and extra are the caller's buffers the entries point into. */
static int compile_argv(char **argv, const char *dir, char *inc, size_t inc_size, char *extra,
                        size_t extra_size)
{
    const char *cc = getenv("CC");
    int n = 0;
    snprintf(inc, inc_size, "-I%s/include", dir);
    argv[n++] = (char *)(cc && *cc ? cc : "cc");
    argv[n++] = "-std=c11";
    argv[n++] = "-O2";
    argv[n++] = "-fno-math-errno";
    argv[n++] = inc;
    snprintf(extra, extra_size, "%s", KILN_PROGRAM_CFLAGS);
    for (char *tok = strtok(extra, " "); tok && n < 24; tok = strtok(NULL, " "))
        argv[n++] = tok;
    return n;
}

/* The runtime folder and its libkilnrt.a (lib: PATH_MAX + 16 bytes), or -1 after reporting. */
static int runtime_lib(char *dir, size_t dir_size, char *lib, size_t lib_size)
{
    if (runtime_dir(dir, dir_size) < 0)
        return -1;
    snprintf(lib, lib_size, "%s/libkilnrt.a", dir);
    if (access(lib, R_OK) != 0) {
        fprintf(stderr, "kiln: error: runtime library %s is missing (build with ninja, or set "
                        "KILN_RUNTIME_DIR)\n", lib);
        return -1;
    }
    return 0;
}

/* Runs the compiler command argv on src; 0, or -1 after reporting. */
static int run_compiler(char *const argv[], const char *src, int verbose)
{
    int rc = run(argv, verbose);
    if (rc != 0) {
        fprintf(stderr, "kiln: error: the C compiler failed (exit %d) on %s\n", rc, src);
        return -1;
    }
    return 0;
}

int codegen_compile(const char *c_path, const char *exe_path, int verbose)
{
    char dir[PATH_MAX], inc[PATH_MAX + 16], lib[PATH_MAX + 16], extra[256];
    if (runtime_lib(dir, sizeof dir, lib, sizeof lib) < 0)
        return -1;
    char *argv[32];
    int n = compile_argv(argv, dir, inc, sizeof inc, extra, sizeof extra);
    argv[n++] = "-o";
    argv[n++] = (char *)exe_path;
    argv[n++] = (char *)c_path;
    argv[n++] = lib;
    argv[n++] = "-lm";
    argv[n++] = "-lpthread";
    argv[n] = NULL;
    return run_compiler(argv, c_path, verbose);
}

int codegen_compile_object(const char *src_path, const char *obj_path, const char *const *flags,
                           int verbose)
{
    char dir[PATH_MAX], inc[PATH_MAX + 16], extra[256];
    if (runtime_dir(dir, sizeof dir) < 0)
        return -1;
    char *argv[40];
    int n = compile_argv(argv, dir, inc, sizeof inc, extra, sizeof extra);
    for (int i = 0; flags && flags[i] && n < 32; i++)
        argv[n++] = (char *)flags[i];
    argv[n++] = "-c";
    argv[n++] = "-o";
    argv[n++] = (char *)obj_path;
    argv[n++] = (char *)src_path;
    argv[n] = NULL;
    return run_compiler(argv, src_path, verbose);
}

int codegen_runtime_archive(char *lib, size_t size)
{
    char dir[PATH_MAX], path[PATH_MAX + 16];
    if (runtime_lib(dir, sizeof dir, path, sizeof path) < 0)
        return -1;
    snprintf(lib, size, "%s", path);
    return 0;
}

int codegen_run_tool(char *const argv[], int verbose)
{
    int rc = run(argv, verbose);
    if (rc != 0)
        fprintf(stderr, "kiln: error: %s failed (exit %d)\n", argv[0], rc);
    return rc == 0 ? 0 : -1;
}

const char *codegen_program_cflags(void) { return KILN_PROGRAM_CFLAGS; }
