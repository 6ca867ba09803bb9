/*
 * The runtime of vcam-me's AppImage: the small program at the front of the file.
 *
 * An AppImage (type 2) is this executable with a SquashFS image of the application folder
 * appended right after its own ELF data. At start the runtime mounts that image read-only with
 * FUSE (squashfuse's library is linked in, so the user needs only FUSE itself: the kernel module
 * and fusermount3, present on desktop distributions) and runs AppRun from it with the same
 * arguments; the application is never unpacked to disk. When FUSE is missing, the image can be
 * unpacked instead (--appimage-extract, --appimage-extract-and-run).
 *
 * Process layout: the runtime forks. The child serves the file system; the parent waits until
 * the mount is ready and then becomes the application (exec), so the application keeps the PID
 * the user started, its exit status and its terminal signals. The child leaves the terminal's
 * process group (Ctrl-C reaches only the application) and asks the kernel for SIGTERM when the
 * application ends (PR_SET_PDEATHSIG); it then unmounts and removes the mount point.
 *
 * Written for vcam_me (GPL-2.0-or-later). Build: installers/linux/appimage.sh.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* squashfuse's config.h sets _POSIX_C_SOURCE again; the system headers above already saw it */
#undef _POSIX_C_SOURCE
#include "ll.h"
#include "traverse.h"
#include "util.h"

#define NAME "vcam-me"

/* Update information (empty: no delta updates) and signature slots, as the AppImage
 * specification lays out, so that AppImage tools find the sections they look for. */
__attribute__((section(".upd_info"), used)) static char update_info[1024];
__attribute__((section(".sha256_sig"), used)) static char signature[1024];
__attribute__((section(".sig_key"), used)) static char signature_key[8192];

static void fail(const char *what) { fprintf(stderr, NAME ": %s: %s\n", what, strerror(errno)); }

/* Where the appended image starts: the end of this ELF file's own data (headers, segments,
 * sections and the section header table, whichever ends last). */
static off_t image_offset(const char *self) {
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { fail(self); return -1; }
    Elf64_Ehdr eh;
    off_t end = -1;
    if (pread(fd, &eh, sizeof eh, 0) == (ssize_t)sizeof eh && memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0 &&
        eh.e_ident[EI_CLASS] == ELFCLASS64) {
        end = (off_t)(eh.e_shoff + (off_t)eh.e_shentsize * eh.e_shnum);
        for (int i = 0; i < eh.e_phnum; i++) {
            Elf64_Phdr ph;
            if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (off_t)i * eh.e_phentsize)) != (ssize_t)sizeof ph) break;
            if ((off_t)(ph.p_offset + ph.p_filesz) > end) end = (off_t)(ph.p_offset + ph.p_filesz);
        }
        for (int i = 0; i < eh.e_shnum; i++) {
            Elf64_Shdr sh;
            if (pread(fd, &sh, sizeof sh, (off_t)(eh.e_shoff + (off_t)i * eh.e_shentsize)) != (ssize_t)sizeof sh) break;
            if (sh.sh_type != SHT_NOBITS && (off_t)(sh.sh_offset + sh.sh_size) > end) end = (off_t)(sh.sh_offset + sh.sh_size);
        }
    } else {
        fprintf(stderr, NAME ": %s is not a 64-bit ELF file\n", self);
    }
    close(fd);
    return end;
}

static const struct fuse_lowlevel_ops operations = {
    .getattr = sqfs_ll_op_getattr,
    .opendir = sqfs_ll_op_opendir,
    .releasedir = sqfs_ll_op_releasedir,
    .readdir = sqfs_ll_op_readdir,
    .lookup = sqfs_ll_op_lookup,
    .open = sqfs_ll_op_open,
    .create = sqfs_ll_op_create,
    .release = sqfs_ll_op_release,
    .read = sqfs_ll_op_read,
    .readlink = sqfs_ll_op_readlink,
    .listxattr = sqfs_ll_op_listxattr,
    .getxattr = sqfs_ll_op_getxattr,
    .forget = sqfs_ll_op_forget,
    .statfs = stfs_ll_op_statfs,
};

/* The file-system server (the forked child). Writes one byte to `ready`: 'M' mounted, 'E' not. */
static void serve(const char *self, off_t offset, const char *mountpoint, pid_t app, int ready) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != app) _exit(0); /* the application ended before the request took effect */
    sqfs_ll *ll = sqfs_ll_open(self, (size_t)offset);
    if (ll == NULL) { (void)!write(ready, "E", 1); _exit(1); }
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, NAME);
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "ro,nodev,nosuid,fsname=" NAME ".AppImage,subtype=squashfuse");
    struct fuse_lowlevel_ops ops = operations;
    sqfs_ll_chan channel;
    if (sqfs_ll_mount(&channel, mountpoint, &args, &ops, sizeof ops, ll) != SQFS_OK) {
        (void)!write(ready, "E", 1);
        _exit(1);
    }
    fuse_set_signal_handlers(channel.session);
    (void)!write(ready, "M", 1);
    close(ready);
    fuse_session_loop(channel.session);
    fuse_remove_signal_handlers(channel.session);
    sqfs_ll_unmount(&channel, mountpoint);
    rmdir(mountpoint);
    _exit(0);
}

static const char *temp_dir(void) {
    const char *t = getenv("TMPDIR");
    return (t && *t) ? t : "/tmp";
}

/* Sets what AppImage applications expect to find, then replaces this process with AppRun. */
static int exec_app(const char *appdir, const char *self, char **argv) {
    char apprun[PATH_MAX], cwd[PATH_MAX];
    snprintf(apprun, sizeof apprun, "%s/AppRun", appdir);
    setenv("APPIMAGE", self, 1);
    setenv("APPDIR", appdir, 1);
    setenv("ARGV0", argv[0], 1);
    if (getcwd(cwd, sizeof cwd)) setenv("OWD", cwd, 1);
    argv[0] = apprun;
    execv(apprun, argv);
    fail(apprun);
    return 127;
}

static int run_mounted(const char *self, off_t offset, char **argv) {
    char mountpoint[PATH_MAX];
    snprintf(mountpoint, sizeof mountpoint, "%s/.mount_" NAME ".XXXXXX", temp_dir());
    if (!mkdtemp(mountpoint)) { fail("cannot make a mount point"); return 1; }
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) != 0) { fail("pipe"); return 1; }
    pid_t app = getpid();
    pid_t server = fork();
    if (server < 0) { fail("fork"); return 1; }
    if (server == 0) {
        close(ready[0]);
        serve(self, offset, mountpoint, app, ready[1]);
    }
    close(ready[1]);
    char state = 0;
    ssize_t got;
    do got = read(ready[0], &state, 1); while (got < 0 && errno == EINTR);
    close(ready[0]);
    if (got != 1 || state != 'M') {
        waitpid(server, NULL, 0);
        rmdir(mountpoint);
        fprintf(stderr,
                NAME ": cannot mount the application image with FUSE. Install FUSE 3 (Debian/Ubuntu: "
                "sudo apt install fuse3; Fedora: sudo dnf install fuse3), or start it unpacked: %s "
                "--appimage-extract-and-run\n", self);
        return 1;
    }
    return exec_app(mountpoint, self, argv);
}

/* -- unpacking (no FUSE) --------------------------------------------------------------------- */

static int extract_file(sqfs *fs, sqfs_inode *inode, const char *path) {
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) { fail(path); return -1; }
    static char buf[1 << 20];
    sqfs_off_t size = (sqfs_off_t)inode->xtra.reg.file_size;
    for (sqfs_off_t done = 0; done < size;) {
        sqfs_off_t n = size - done < (sqfs_off_t)sizeof buf ? size - done : (sqfs_off_t)sizeof buf;
        if (sqfs_read_range(fs, inode, done, &n, buf) != SQFS_OK || n <= 0) {
            fprintf(stderr, NAME ": cannot read %s from the image\n", path);
            close(out);
            return -1;
        }
        for (sqfs_off_t w = 0; w < n;) {
            ssize_t k = write(out, buf + w, (size_t)(n - w));
            if (k < 0) { fail(path); close(out); return -1; }
            w += k;
        }
        done += n;
    }
    return close(out);
}

/* Unpacks the image into `dest` (which must not exist yet). */
static int extract(const char *self, off_t offset, const char *dest) {
    sqfs fs;
    if (sqfs_open_image(&fs, self, (size_t)offset) != SQFS_OK) return -1;
    if (mkdir(dest, 0755) != 0) { fail(dest); sqfs_destroy(&fs); return -1; }
    sqfs_traverse trv;
    if (sqfs_traverse_open(&trv, &fs, sqfs_inode_root(&fs)) != SQFS_OK) { sqfs_destroy(&fs); return -1; }
    sqfs_err err = SQFS_OK;
    int rc = 0;
    size_t files = 0;
    while (rc == 0 && sqfs_traverse_next(&trv, &err)) {
        if (trv.dir_end) continue;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dest, trv.path);
        sqfs_inode inode;
        if (sqfs_inode_get(&fs, &inode, sqfs_dentry_inode(&trv.entry)) != SQFS_OK) { rc = -1; break; }
        mode_t mode = inode.base.mode & 07777;
        if (S_ISDIR(inode.base.mode)) {
            if (mkdir(path, 0755) != 0) { fail(path); rc = -1; }
        } else if (S_ISREG(inode.base.mode)) {
            rc = extract_file(&fs, &inode, path);
            if (rc == 0) chmod(path, mode);
            if (++files % 500 == 0) fprintf(stderr, "\r" NAME ": unpacked %zu files", files);
        } else if (S_ISLNK(inode.base.mode)) {
            char target[PATH_MAX];
            size_t size = sizeof target;
            if (sqfs_readlink(&fs, &inode, target, &size) != SQFS_OK || symlink(target, path) != 0) { fail(path); rc = -1; }
        }
        if (rc == 0 && S_ISDIR(inode.base.mode)) chmod(path, mode | 0700);
    }
    if (err != SQFS_OK) rc = -1;
    fprintf(stderr, "\r" NAME ": unpacked %zu files into %s\n", files, dest);
    sqfs_traverse_close(&trv);
    sqfs_destroy(&fs);
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

static int extract_and_run(const char *self, off_t offset, char **argv) {
    char dest[PATH_MAX];
    snprintf(dest, sizeof dest, "%s/appimage_extracted_" NAME ".XXXXXX", temp_dir());
    if (!mkdtemp(dest) || rmdir(dest) != 0 || extract(self, offset, dest) != 0) return 1;
    pid_t child = fork();
    if (child == 0) _exit(exec_app(dest, self, argv));
    int status = 0;
    signal(SIGINT, SIG_IGN); /* Ctrl-C is the application's to handle; then we clean up */
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    nftw(dest, remove_entry, 32, FTW_DEPTH | FTW_PHYS);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) { fail("/proc/self/exe"); return 1; }
    self[n] = '\0';
    off_t offset = image_offset(self);
    if (offset <= 0) return 1;
    const char *option = argc > 1 ? argv[1] : "";
    if (strcmp(option, "--appimage-offset") == 0) {
        printf("%lld\n", (long long)offset);
        return 0;
    }
    if (strcmp(option, "--appimage-extract") == 0) {
        return extract(self, offset, "squashfs-root") == 0 ? 0 : 1;
    }
    if (strcmp(option, "--appimage-extract-and-run") == 0) {
        argv[1] = argv[0];
        return extract_and_run(self, offset, argv + 1);
    }
    if (strcmp(option, "--appimage-help") == 0) {
        printf("%s [ARGS...]              run vcam-me (the image is mounted with FUSE, not unpacked)\n"
               "  --appimage-extract          unpack into ./squashfs-root\n"
               "  --appimage-extract-and-run  unpack into a temporary folder, run, and remove it\n"
               "  --appimage-offset           print where the image starts in this file\n", argv[0]);
        return 0;
    }
    return run_mounted(self, offset, argv);
}
