/* outfile.c - output files that appear whole or not at all, without replacing devices.
 *
 * A regular file or a new path is written through a temporary beside it (PATH.tmp.XXXXXX)
 * that is renamed onto PATH by outfile_commit, so a failure leaves no partial output and
 * leaves an existing file untouched. Anything else that exists (a character device such as
 * /dev/null, a FIFO, a socket) is opened and written directly: renaming onto it would
 * replace the node with a regular file. "-" is standard output when the caller allows it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base.h"

int outfile_open(outfile *o, const char *path, int mode, int flags)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    o->path = path;
    if ((flags & OUTFILE_STDOUT) && strcmp(path, "-") == 0) {
        fflush(stdout);
        o->f = stdout;
        o->fd = STDOUT_FILENO;
        o->is_stdout = 1;
        return 0;
    }
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) {
            diag_file_error(path, "cannot write: it is a folder");
            return -1;
        }
        o->fd = open(path, O_WRONLY | O_NOCTTY);
        if (o->fd < 0) {
            diag_file_error(path, "cannot write: %s", strerror(errno));
            return -1;
        }
    } else {
        size_t len = strlen(path);
        static const char suffix[] = ".tmp.XXXXXX";
        if (!(o->tmp = malloc(len + sizeof suffix))) {
            diag_file_error(path, "out of memory");
            return -1;
        }
        memcpy(o->tmp, path, len);
        memcpy(o->tmp + len, suffix, sizeof suffix);
        o->fd = mkstemp(o->tmp);
        if (o->fd < 0) {
            diag_file_error(path, "cannot create a temporary file beside it: %s",
                            strerror(errno));
            free(o->tmp);
            o->tmp = NULL;
            return -1;
        }
        (void)fchmod(o->fd, (mode_t)mode);   /* mkstemp makes 0600 */
    }
    if ((flags & OUTFILE_STREAM) && !(o->f = fdopen(o->fd, "wb"))) {
        diag_file_error(path, "cannot write: %s", strerror(errno));
        outfile_abort(o);
        return -1;
    }
    return 0;
}

/* Closes the stream or descriptor (standard output is only flushed); 0 or an errno value. */
static int close_output(outfile *o)
{
    int err = 0;
    errno = 0;
    if (o->is_stdout) {
        if (fflush(stdout) != 0 || ferror(stdout))
            err = errno ? errno : EIO;
    } else if (o->f) {
        if (fflush(o->f) != 0 || ferror(o->f))
            err = errno ? errno : EIO;
        if (fclose(o->f) != 0 && !err)
            err = errno ? errno : EIO;
    } else if (o->fd >= 0 && close(o->fd) != 0) {
        err = errno ? errno : EIO;
    }
    o->f = NULL;
    o->fd = -1;
    return err;
}

int outfile_commit(outfile *o)
{
    int err = close_output(o), rc = err ? -1 : 0;
    if (err)
        diag_file_error(o->path, "write failed: %s", strerror(err));
    if (rc == 0 && o->tmp && rename(o->tmp, o->path) != 0) {
        diag_file_error(o->path, "cannot rename %s onto it: %s", o->tmp, strerror(errno));
        rc = -1;
    }
    if (rc != 0 && o->tmp)
        unlink(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
    return rc;
}

void outfile_abort(outfile *o)
{
    (void)close_output(o);
    if (o->tmp)
        unlink(o->tmp);   /* never the target itself */
    free(o->tmp);
    o->tmp = NULL;
}

int outfile_write(outfile *o, const void *p, size_t n)
{
    if (o->f) {
        if (n && fwrite(p, 1, n, o->f) != n) {
            diag_file_error(o->path, "write failed: %s", strerror(errno));
            return -1;
        }
        return 0;
    }
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(o->fd, c, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            diag_file_error(o->path, "write failed: %s", k < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int outfile_copy_from(outfile *o, const char *src)
{
    int fd = open(src, O_RDONLY);
    if (fd < 0) {
        diag_file_error(src, "cannot read: %s", strerror(errno));
        return -1;
    }
    char *buf = malloc(1 << 20);
    int rc = buf ? 0 : -1;
    if (!buf)
        diag_file_error(o->path, "out of memory");
    while (rc == 0) {
        ssize_t k = read(fd, buf, 1 << 20);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            diag_file_error(src, "cannot read: %s", strerror(errno));
            rc = -1;
        }
        if (k <= 0)
            break;
        rc = outfile_write(o, buf, (size_t)k);
    }
    free(buf);
    close(fd);
    return rc;
}
