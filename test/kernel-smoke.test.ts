import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel } from '../kernel-shim/kernel.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';

async function run(main: (sys: Sys) => Promise<unknown>, opts: { uid?: number } = {}): Promise<number> {
  const machine = createMachine({ memory: { size: 64 << 20 } });
  const kernel = bootKernel(machine);
  const p = kernel.spawn({ comm: 't', ...opts }, main);
  await machine.sim.run();
  return p.exited;
}

describe('kernel smoke', () => {
  it('eventfd round trip, anon mmap, pagemap', async () => {
    const status = await run(async (sys) => {
      const fd = await sys.eventfd(0, 0);
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, 5n, true);
      expect(await sys.write(fd, b)).toBe(8);
      const r = new Uint8Array(8);
      expect(await sys.read(fd, r)).toBe(8);
      expect(new DataView(r.buffer).getBigUint64(0, true)).toBe(5n);
      const m = await sys.mmap(null, 8192, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      m.write32(4, 0xdeadbeef);
      expect(m.read32(4)).toBe(0xdeadbeef);
      const pm = await sys.open('/proc/self/pagemap', O.RDONLY);
      const e = new Uint8Array(8);
      expect(await sys.pread(pm, e, Number(m.addr / 4096n) * 8)).toBe(8);
      const v = new DataView(e.buffer).getBigUint64(0, true);
      expect(v >> 63n).toBe(1n);
      expect(v & ((1n << 55n) - 1n)).not.toBe(0n);
      await expect(sys.read(99, r)).rejects.toMatchObject({ code: 'EBADF', errno: 9, syscall: 'read' });
      return 3;
    });
    expect(status).toBe(3);
  });
});
