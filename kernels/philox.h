/* philox.h -- the constants of Philox4x32 (Random123, include/Random123/philox.h), used by the
 * scalar reference in dispatch.c and the vector kernels in fill_impl.h.  The Numba Philox
 * (fastinit/_philox.py) carries the same four numbers; both are checked against Random123's
 * known-answer vectors (tests/test_kernels.py). */
#ifndef FI_PHILOX_H
#define FI_PHILOX_H

#define PHILOX_M0 0xD2511F53u  /* Random123 PHILOX_M4x32_0: multiplier of word 0 */
#define PHILOX_M1 0xCD9E8D57u  /* Random123 PHILOX_M4x32_1: multiplier of word 2 */
#define PHILOX_W0 0x9E3779B9u  /* Random123 PHILOX_W32_0: golden ratio, key bump of word 0 */
#define PHILOX_W1 0xBB67AE85u  /* Random123 PHILOX_W32_1: sqrt(3) - 1, key bump of word 1 */

#endif
