// Thin wrappers over Linux ioctls and fallocate for Tandem's block-device adapter.
#define _GNU_SOURCE
#include "ctandemsys.h"
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/falloc.h>
#include <linux/nbd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

int tandem_blk_getsize64(int fd, uint64_t *bytes) { return ioctl(fd, BLKGETSIZE64, bytes); }
int tandem_blk_sszget(int fd, int *size) { return ioctl(fd, BLKSSZGET, size); }
int tandem_blk_discard(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = { offset, length };
    return ioctl(fd, BLKDISCARD, range);
}
int tandem_blk_zeroout(int fd, uint64_t offset, uint64_t length) {
    uint64_t range[2] = { offset, length };
    return ioctl(fd, BLKZEROOUT, range);
}
int tandem_punch_hole(int fd, uint64_t offset, uint64_t length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
}
int tandem_open(const char *path, int flags, int mode) { return open(path, flags, mode); }
int tandem_o_direct(void) { return O_DIRECT; }

unsigned long long tandem_heap_in_use(void) {
    struct mallinfo2 m = mallinfo2();
    return (unsigned long long)m.uordblks + (unsigned long long)m.hblkhd;
}

void tandem_keep_large_buffers_on_heap(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

int tandem_nbd_configure(int fd, int sock, uint64_t size_bytes, uint32_t block_size, uint32_t flags) {
    ioctl(fd, NBD_CLEAR_SOCK);  // a client left configured by a killed daemon
    if (ioctl(fd, NBD_SET_BLKSIZE, (unsigned long)block_size) < 0) return -1;
    if (ioctl(fd, NBD_SET_SIZE_BLOCKS, (unsigned long)(size_bytes / block_size)) < 0) return -1;
    if (ioctl(fd, NBD_SET_FLAGS, (unsigned long)flags) < 0) return -1;
    return ioctl(fd, NBD_SET_SOCK, (unsigned long)sock);
}
int tandem_nbd_do_it(int fd) { return ioctl(fd, NBD_DO_IT); }
int tandem_nbd_disconnect(int fd) { return ioctl(fd, NBD_DISCONNECT); }
int tandem_nbd_clear_sock(int fd) { return ioctl(fd, NBD_CLEAR_SOCK); }
int tandem_blk_set_ro(int fd, int read_only) { return ioctl(fd, BLKROSET, &read_only); }
int tandem_lock_memory(void) { return mlockall(MCL_CURRENT | MCL_FUTURE); }
int tandem_set_io_flusher(void) { return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0); }
int tandem_socketpair(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }

long tandem_pwrite_dsync(int fd, const void *buf, unsigned long len, uint64_t offset) {
#ifdef RWF_DSYNC
    struct iovec v = { (void *)buf, len };
    return (long)pwritev2(fd, &v, 1, (off_t)offset, RWF_DSYNC);
#else
    errno = EOPNOTSUPP;
    return -1;
#endif
}

int tandem_start_writeback(int fd, uint64_t offset, uint64_t length) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)length, SYNC_FILE_RANGE_WRITE);
}
