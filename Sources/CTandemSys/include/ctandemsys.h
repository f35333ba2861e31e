#ifndef TANDEM_CTANDEMSYS_H
#define TANDEM_CTANDEMSYS_H
#include <stdint.h>

/// Linux block-device calls that Swift cannot make directly (ioctl is variadic).
/// Each returns 0 on success or -1 with errno set.
int tandem_blk_getsize64(int fd, uint64_t *bytes);
int tandem_blk_sszget(int fd, int *logical_block_size);
int tandem_blk_discard(int fd, uint64_t offset, uint64_t length);
int tandem_blk_zeroout(int fd, uint64_t offset, uint64_t length);
int tandem_punch_hole(int fd, uint64_t offset, uint64_t length);
int tandem_open(const char *path, int flags, int mode);
int tandem_o_direct(void);
/// Keeps buffers up to 64 MiB on the heap and the heap from shrinking (mallopt).
void tandem_keep_large_buffers_on_heap(void);
#endif
