/**
 * The virtual time kernel paths cost, in ns. dmasim's own figures, of the order a 2020s x86 server shows
 * (syscall entry and exit with mitigations ~100 ns; an uncached MMIO read is a PCIe round trip, a write is
 * posted); they make traces plausible, and nothing depends on their exact values.
 */
export const COST = {
  /** Entering and leaving the kernel. */
  syscall: 100,
  /** A 1-4 byte uncached read of device memory from user space (a non-posted PCIe round trip). */
  mmioRead: 400,
  /** An 8-byte one. */
  mmioRead64: 450,
  /** A posted MMIO write. */
  mmioWrite: 60,
  /** Configuration space access through ECAM (a read; writes cost the same). */
  configAccess: 500,
  /** A context switch to a woken thread (added when a blocking wait returns). */
  wakeup: 1000,
} as const;
