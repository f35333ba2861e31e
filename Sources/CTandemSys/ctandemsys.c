// Thin wrappers over Linux ioctls and fallocate for Tandem's block-device adapter.
#define _GNU_SOURCE
#include "ctandemsys.h"
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/falloc.h>

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

void tandem_keep_large_buffers_on_heap(void) {
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
