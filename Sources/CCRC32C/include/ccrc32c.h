#ifndef TANDEM_CCRC32C_H
#define TANDEM_CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Returns 1 when this CPU has a CRC32C instruction that tandem_crc32c_hw can use.
int tandem_crc32c_hw_available(void);

/// Continues a reflected CRC-32C (Castagnoli) over `len` bytes from `crc`, the running
/// register value (no pre- or post-inversion is applied here; callers choose their own
/// conventions). Only call when tandem_crc32c_hw_available() returned 1.
uint32_t tandem_crc32c_hw(uint32_t crc, const void *data, size_t len);

#endif
