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
/// One write that is durable when it returns, without flushing anything else of the file
/// (pwritev2 with RWF_DSYNC: a FUA write). Returns bytes written or -1 with errno.
long tandem_pwrite_dsync(int fd, const void *buf, unsigned long len, uint64_t offset);
/// Starts writing back a range of a file's dirty pages without waiting (sync_file_range).
int tandem_start_writeback(int fd, uint64_t offset, uint64_t length);
/// Keeps buffers up to 64 MiB on the heap and the heap from shrinking (mallopt).
void tandem_keep_large_buffers_on_heap(void);
/// Bytes the allocator has handed out and not yet taken back (mallinfo2: in-use chunks and
/// mmapped blocks): what the program holds, whatever the allocator keeps cached besides.
unsigned long long tandem_heap_in_use(void);

/// The kernel NBD client (/dev/nbdN, ioctl interface): hands one end of a connected socket to
/// the kernel with the size, block size and transmission flags. Does not start it.
int tandem_nbd_configure(int fd, int sock, uint64_t size_bytes, uint32_t block_size, uint32_t flags);
/// Runs the kernel's NBD client until it is disconnected; blocks the calling thread.
int tandem_nbd_do_it(int fd);
/// Asks the kernel client to send NBD_CMD_DISC and stop (NBD_DISCONNECT).
int tandem_nbd_disconnect(int fd);
/// Drops the socket from the kernel client after it stopped (NBD_CLEAR_SOCK).
int tandem_nbd_clear_sock(int fd);
/// Marks a block device read-only or writable (BLKROSET).
int tandem_blk_set_ro(int fd, int read_only);
/// Locks the process's current and future memory (mlockall), so serving writeback never waits
/// on paging.
int tandem_lock_memory(void);
/// Marks the calling thread (and the threads it creates afterwards) an I/O flusher
/// (PR_SET_IO_FLUSHER): its allocations never recurse into writeback.
int tandem_set_io_flusher(void);
/// A connected pair of Unix stream sockets.
int tandem_socketpair(int fds[2]);
#endif
