import { describe, expect, it } from 'vitest';
import { DeadlockError } from '../sim/index.ts';
import { withMachine, LeakError } from '../userspace/index.ts';
import { MAP, PROT } from '../kernel-shim/index.ts';

const small = { memory: { size: 64 << 20 } };

describe('withMachine', () => {
  it('runs a process to its exit status and tears the machine down', async () => {
    const status = await withMachine(small, async ({ spawn, run, kernel }) => {
      const p = spawn({ comm: 'drv', uid: 0 }, async (sys) => {
        const fd = await sys.eventfd(0, 0);
        const b = new Uint8Array(8);
        new DataView(b.buffer).setBigUint64(0, 1n, true);
        await sys.write(fd, b);
        await sys.read(fd, b);
        const m = await sys.mmap(null, 8192, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
        m.write32(0, 7);
        return 5;
      });
      await run();
      expect(kernel.tasks).toHaveLength(0);
      return p.exited;
    });
    expect(status).toBe(5);
  });

  it('runs the simulation itself when fn never calls run', async () => {
    let done = false;
    await withMachine(small, ({ spawn }) => {
      spawn('drv', () => {
        done = true;
      });
    });
    expect(done).toBe(true);
  });

  it("rejects with a crashed process's own error", async () => {
    const boom = new Error('driver bug');
    await expect(
      withMachine(small, async ({ spawn, run }) => {
        spawn('drv', () => {
          throw boom;
        });
        await run();
      }),
    ).rejects.toBe(boom);
  });

  it('names the blocked process and its call on a deadlock', async () => {
    const err = await withMachine(small, async ({ spawn, run }) => {
      spawn('waiter', async (sys) => {
        const fd = await sys.eventfd(0, 0);
        await sys.read(fd, new Uint8Array(8));
      });
      await run();
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlockError);
    const d = err as DeadlockError;
    expect(d.blocked.some((b) => b.name.includes('waiter'))).toBe(true);
    expect(d.message).toMatch(/waiter\[\d+\]: blocked in .*eventfd/);
  });

  it('kills processes left running when fn fails, and frees their memory', async () => {
    let k: import('../kernel-shim/index.ts').Kernel | undefined;
    await expect(
      withMachine(small, async ({ spawn, kernel }) => {
        k = kernel;
        spawn('hog', async (sys) => {
          const m = await sys.mmap(null, 4 * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
          m.write32(0, 1);
          const fd = await sys.eventfd(0, 0);
          await sys.read(fd, new Uint8Array(8));
        });
        await kernel.sim.run({ until: 1000 }).catch(() => undefined);
        expect(kernel.userPages.live).toBeGreaterThan(0);
        throw new Error('stop here');
      }),
    ).rejects.toThrow('stop here');
    expect(k?.tasks).toHaveLength(0);
    expect(k?.userPages.live).toBe(0);
    expect(k?.userPages.pinned).toBe(0);
  });

  it('reports pages leaked past teardown', async () => {
    await expect(
      withMachine(small, ({ kernel }) => {
        kernel.userPages.alloc(new Uint8Array(4096));
      }),
    ).rejects.toBeInstanceOf(LeakError);
  });
});
