/* build.c - from a planned module and its packed weights to an executable on disk.
 *
 * The C goes into a temporary folder ($TMPDIR, else /tmp), is compiled and linked with the
 * runtime, and the blob is appended; the result is renamed onto the output only when every
 * step worked, so a failed build leaves no partial program (base/outfile.c), and the
 * temporaries are registered so that an interrupted one leaves none either. `kiln build` and
 * the builds that measure a pass's effect (calibration) both come through here, and so does
 * --blob (the program and its blob apart).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen.h"

int codegen_write_c(const ir_module *m, const char *path)
{
    outfile out;
    if (outfile_open(&out, path, 0644, OUTFILE_STREAM | OUTFILE_STDOUT) != 0)
        return -1;
    int rc = codegen_emit_c(out.f, m);
    if (rc != 0) {             /* -2: the lowering refused and said why */
        if (rc == -1)
            diag_file_error(path, "write failed: %s", strerror(errno));
        outfile_abort(&out);
        return -1;
    }
    return outfile_commit(&out);
}

int codegen_build_program(const ir_module *m, const pack_tensor *packed, int npacked,
                          const char *out_path, const char *emit_c, int verbose)
{
    int rc = -1;
    char dir[PATH_MAX], c_path[PATH_MAX + 16], exe_path[PATH_MAX + 16];
    outfile exe = {.fd = -1, .slot = -1};
    int exe_open = 0;
    if (snprintf(dir, sizeof dir, "%s/kiln-build-XXXXXX", tmp_folder()) >= (int)sizeof dir ||
        !mkdtemp(dir)) {
        fprintf(stderr, "kiln: error: cannot make a temporary folder in %s: %s\n", tmp_folder(),
                strerror(errno));
        return -1;
    }
    snprintf(c_path, sizeof c_path, "%s/model.c", dir);
    snprintf(exe_path, sizeof exe_path, "%s/prog", dir);
    /* removed on an interruption too (base/outfile.c): the folder, then its files */
    int slots[3] = {tmp_register(dir, 1), tmp_register(c_path, 0), tmp_register(exe_path, 0)};
    if (codegen_write_c(m, c_path) != 0)
        goto out;
    if (emit_c && codegen_write_c(m, emit_c) != 0)
        goto out;
    /* Into the temporary beside the output (renamed onto it at the end); onto a device or
     * FIFO, into the build folder, then copied (the linker and the blob writer need a
     * regular file). */
    if (outfile_open(&exe, out_path, 0755, 0) != 0)
        goto out;
    exe_open = 1;
    const char *target = exe.tmp ? exe.tmp : exe_path;
    if (verbose)
        fprintf(stderr, "kiln: compiling %s\n", c_path);
    if (codegen_compile(c_path, target, verbose) != 0)
        goto out;
    if (verbose && packed)
        fprintf(stderr, "kiln: packing %d tensors\n", npacked);
    if (packed && pack_append_blob(target, packed, npacked) != 0)
        goto out;
    if (exe.tmp && chmod(exe.tmp, 0755) != 0) {
        fprintf(stderr, "kiln: error: cannot write %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    if (!exe.tmp && outfile_copy_from(&exe, exe_path) != 0)
        goto out;
    exe_open = 0;
    if (outfile_commit(&exe) != 0)
        goto out;
    rc = 0;
out:
    if (exe_open)
        outfile_abort(&exe);
    unlink(c_path);
    unlink(exe_path);
    rmdir(dir);
    for (int i = 0; i < 3; i++)
        tmp_forget(slots[i]);
    return rc;
}

int codegen_build_apart(const ir_module *m, const pack_tensor *packed, int npacked,
                        const char *prog, const char *blob, const char *emit_c, int verbose)
{
    struct stat st;
    if (!prog)
        return pack_write_blob(blob, packed, npacked);
    if (stat(blob, &st) == 0 && !S_ISREG(st.st_mode))   /* a device or FIFO: written last */
        return codegen_build_program(m, NULL, npacked, prog, emit_c, verbose) != 0 ||
               pack_write_blob(blob, packed, npacked) != 0 ? -1 : 0;
    /* the blob beside its path first, renamed onto it once the program is built: a failed
     * build leaves neither */
    char *tmp = malloc(strlen(blob) + 16);
    if (!tmp) {
        fprintf(stderr, "kiln: error: out of memory\n");
        return -1;
    }
    sprintf(tmp, "%s.kiln-blob", blob);
    int slot = tmp_register(tmp, 0);
    int rc = pack_write_blob(tmp, packed, npacked) == 0 &&
             codegen_build_program(m, NULL, npacked, prog, emit_c, verbose) == 0 ? 0 : -1;
    if (rc == 0 && rename(tmp, blob) != 0) {
        fprintf(stderr, "kiln: error: cannot rename %s to %s: %s\n", tmp, blob, strerror(errno));
        rc = -1;
    }
    if (rc != 0)
        unlink(tmp);
    tmp_forget(slot);
    free(tmp);
    return rc;
}
