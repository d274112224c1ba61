import { expect } from 'vitest';
import type { Sys } from '../kernel-shim/index.ts';

/** edu's registers (spec/devices.md, QEMU edu). */
export const EDU = { raise: 0x60, ack: 0x64, status: 0x24, src: 0x80, dst: 0x88, count: 0x90, cmd: 0x98, buf: 0x40000 } as const;

/**
 * One edu DMA of `len` bytes through BAR0 (dir 0: RAM -> device buffer, 1: device buffer -> RAM), polled to
 * the end in 1 ms steps (edu starts it from a 100 ms timer); fails the test if it never ends.
 */
export async function eduDma(sys: Sys, bar: { read32(o: number): number; write64(o: number, v: bigint): void }, src: bigint, dst: bigint, len: number, dir: 0 | 1): Promise<void> {
  bar.write64(EDU.src, src);
  bar.write64(EDU.dst, dst);
  bar.write64(EDU.count, BigInt(len));
  bar.write64(EDU.cmd, BigInt(1 | (dir << 1)));
  for (let i = 0; i < 1000 && (bar.read32(EDU.cmd) & 1) !== 0; i++) await sys.nanosleep(1_000_000);
  expect(bar.read32(EDU.cmd) & 1).toBe(0);
}
