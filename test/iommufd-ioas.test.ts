/**
 * iommufd's /dev/iommu and its IOAS objects (spec/linux-uapi.md 0 and 3): every rule with Linux's errno
 * and check order, through the public process API; the in-kernel attach path with the edu behind VT-d.
 * Each expectation names the Linux function that decides it (drivers/iommu/iommufd/{main,ioas,
 * io_pagetable,pages,device}.c, 6.12).
 */
import { describe, expect, it } from 'vitest';
import { errnoOf } from './sys-errno.ts';
import { boot, EDU, run, type Booted } from './vfio-fixture.ts';
import { devicePort } from './dma-port.ts';
import { iommufdFromFile, userLockedVm, type DeviceObject, type IommufdCtx } from '../kernel-shim/iommufd/index.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { _IOW } from '../kernel-shim/uapi/ioctl.ts';
import {
  IOMMUFD, IOMMU_IOAS_MAP, IOMMU_OPTION_ID, IOMMU_OPTION_OP, IOMMU_VFIO_IOAS, iommu_iova_range,
} from '../kernel-shim/uapi/iommufd.ts';
import { encode } from '../kernel-shim/uapi/codec.ts';
import { DmaStatus } from '../sim/index.ts';

const U64_MAX = (1n << 64n) - 1n;
const F = IOMMU_IOAS_MAP;
const RW = F.READABLE | F.WRITEABLE;

async function open(sys: Sys): Promise<number> {
  return sys.open('/dev/iommu', O.RDWR);
}

async function ioasAlloc(sys: Sys, fd: number): Promise<number> {
  const a = { size: 12, flags: 0, out_ioas_id: 0 };
  await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, a);
  return a.out_ioas_id;
}

function mapArg(ioas: number, va: bigint, length: bigint, iova = 0n, flags: number = F.FIXED_IOVA | RW): Record<string, number | bigint> {
  return { size: 40, flags, ioas_id: ioas, __reserved: 0, user_va: va, length, iova };
}

async function map(sys: Sys, fd: number, ioas: number, va: bigint, length: bigint, iova?: bigint, flags?: number): Promise<bigint> {
  const m = mapArg(ioas, va, length, iova, flags);
  await sys.ioctl(fd, IOMMUFD.IOAS_MAP, m);
  return m['iova'] as bigint;
}

async function unmap(sys: Sys, fd: number, ioas: number, iova: bigint, length: bigint): Promise<bigint> {
  const u = { size: 24, ioas_id: ioas, iova, length };
  await sys.ioctl(fd, IOMMUFD.IOAS_UNMAP, u);
  return u.length;
}

async function ranges(sys: Sys, fd: number, ioas: number, n = 8): Promise<{ num: number; alignment: bigint; list: { start: bigint; last: bigint }[] }> {
  const m = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  const r = { size: 32, ioas_id: ioas, num_iovas: n, __reserved: 0, allowed_iovas: m.addr, out_iova_alignment: 0n };
  await sys.ioctl(fd, IOMMUFD.IOAS_IOVA_RANGES, r);
  const list: { start: bigint; last: bigint }[] = [];
  for (let i = 0; i < Math.min(n, r.num_iovas); i++) list.push({ start: m.read64(i * 16), last: m.read64(i * 16 + 8) });
  await sys.munmap(m.addr, 4096);
  return { num: r.num_iovas, alignment: r.out_iova_alignment, list };
}

async function buffer(sys: Sys, pages: number): Promise<bigint> {
  const m = await sys.mmap(null, pages * 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  for (let i = 0; i < pages; i++) m.write32(i * 4096, (0xa500_0000 | i) >>> 0);
  return m.addr;
}

/** The context behind `fd` of the calling process. */
async function ctxOf(sys: Sys, b: Booted, fd: number): Promise<IommufdCtx> {
  const file = b.kernel.task(await sys.getpid())?.fds.get(fd);
  if (file === undefined) throw new Error('no file');
  const c = iommufdFromFile(file);
  if (typeof c === 'number') throw new Error('not iommufd');
  return c;
}

/** Binds the edu to the context (iommufd_device_bind claims its group's DMA ownership). */
function bindEdu(b: Booted, ctx: IommufdCtx): DeviceObject {
  const pdev = b.kernel.pci.device(EDU);
  if (pdev === undefined) throw new Error('no edu');
  const d = ctx.bindDevice(pdev);
  if (typeof d === 'number') throw new Error(`bind: ${d}`);
  return d;
}

describe('/dev/iommu (iommufd_init, iommu_misc_dev)', () => {
  it('is misc 10:127, mode 0660 root, with /sys/class/misc/iommu, on 6.12', async () => {
    await run(async (sys, { kernel }) => {
      const n = kernel.vfs.lookup('/dev/iommu', undefined);
      if (typeof n === 'number' || n.inode.kind !== 'file') throw new Error('no /dev/iommu');
      expect(n.inode.rdev).toEqual({ major: 10, minor: 127 });
      expect(n.inode.mode).toBe(0o660);
      expect(n.inode.uid).toBe(0);
      const fd = await sys.open('/sys/class/misc/iommu/dev', O.RDONLY);
      const buf = new Uint8Array(16);
      const len = await sys.read(fd, buf);
      expect(new TextDecoder().decode(buf.subarray(0, len))).toBe('10:127\n');
    });
  });

  it('does not exist on 6.1 (iommufd came with 6.2)', async () => {
    await run(async (sys) => {
      expect(await errnoOf(sys.open('/dev/iommu', O.RDWR))).toBe('ENOENT');
      expect(await errnoOf(sys.readlink('/sys/class/misc/iommu'))).toBe('ENOENT');
    }, { kernel: { linux: '6.1' } });
  });

  it('an unprivileged process cannot open it (0660 root:root): EACCES', async () => {
    await run(async (sys) => {
      expect(await errnoOf(open(sys))).toBe('EACCES');
    }, { spawn: { uid: 1000 } });
  });
});

describe('teardown (iommufd_fops_release)', () => {
  it('exit closes the fd: every IOAS and its mappings go; a second context is unaffected by the first closing', async () => {
    const b = boot();
    let kept: IommufdCtx | undefined;
    let gone: IommufdCtx | undefined;
    await run(async (sys) => {
      const fd = await open(sys);
      const fd2 = await open(sys);
      gone = await ctxOf(sys, b, fd);
      kept = await ctxOf(sys, b, fd2);
      const va = await buffer(sys, 2);
      for (const f of [fd, fd2]) {
        const ioas = await ioasAlloc(sys, f);
        await map(sys, f, ioas, va, 0x2000n, 0x10000n);
        await sys.ioctl(f, IOMMUFD.VFIO_IOAS, { size: 12, ioas_id: ioas, op: IOMMU_VFIO_IOAS.SET });
      }
      await sys.close(fd);
      expect(gone.objects.size).toBe(0);
      expect(gone.vfioIoas).toBeNull();
      expect(kept.objects.size).toBe(1);
    }, { booted: b });
    expect(kept?.objects.size).toBe(0);
    expect(b.kernel.userPages.pinned).toBe(0);
  });
});

describe('dispatch and the size rule (iommufd_fops_ioctl, copy_struct_from_user)', () => {
  it('ids start at 1 and the lowest free one is reused; each open is its own table', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await ioasAlloc(sys, fd)).toBe(1);
      expect(await ioasAlloc(sys, fd)).toBe(2);
      await sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: 1 });
      expect(await ioasAlloc(sys, fd)).toBe(1);
      const fd2 = await open(sys);
      expect(await ioasAlloc(sys, fd2)).toBe(1);
    });
  });

  it('the size word is read first: NULL is EFAULT, even for a number whose full value does not match', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, 0))).toBe('EFAULT');
      const wrong = _IOW(';', 0x80, 8);
      expect(await errnoOf(sys.ioctl(fd, wrong, 0))).toBe('EFAULT');
      expect(await errnoOf(sys.ioctl(fd, wrong, Uint32Array.of(8, 1)))).toBe('ENOTTY');
    });
  });

  it('numbers below 0x80 and past the 6.12 table (0x8f on) go to the VFIO compat handler (iommufd-compat.test.ts): ENOTTY for what it does not know', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await sys.ioctl(fd, 0x3b64)).toBe(0);
      expect(await errnoOf(sys.ioctl(fd, 0x3b67))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_MAP_FILE, Uint32Array.of(40, 0, 0, 0, 0, 0, 0, 0, 0, 0)))).toBe('ENOTTY');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VIOMMU_ALLOC, Uint32Array.of(8, 0)))).toBe('ENOTTY');
    });
  });

  it('size below the minimum EINVAL; a nonzero tail E2BIG; a zero tail and a shorter-but-minimal size are fine', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, Uint32Array.of(7, 1)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, Uint32Array.of(16, 0, 0, 1)))).toBe('E2BIG');
      const a = Uint32Array.of(16, 0, 0, 0);
      await sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, a);
      expect(a[2]).toBe(1);
      // The tail past sizeof is never written back.
      expect(a[3]).toBe(0);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, Uint32Array.of(11, 0, 0)))).toBe('EINVAL');
    });
  });

  it('unknown flags and nonzero reserved fields: EOPNOTSUPP (before ENOENT)', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, { size: 12, flags: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_MAP, { ...mapArg(9, 0n, 4096n), flags: 8 | RW }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_MAP, { ...mapArg(9, 0n, 4096n), __reserved: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, { size: 40, flags: 8 | RW, dst_ioas_id: 9, src_ioas_id: 9, length: 4096n }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_IOVA_RANGES, { size: 32, ioas_id: 9, __reserved: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_ALLOW_IOVAS, { size: 24, ioas_id: 9, __reserved: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, { size: 24, option_id: 0, op: 1, __reserved: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, { size: 12, op: 0, __reserved: 1 }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_ALLOC, { size: 48, flags: 0x10 }))).toBe('EOPNOTSUPP');
    });
  });

  it('what dmasim does not build: HWPT_ALLOC / GET_HW_INFO / dirty / invalidate name an unknown object ENOENT; fault queues EOPNOTSUPP', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_ALLOC, { size: 48, dev_id: 1, pt_id: 1 }))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_ALLOC, { size: 23 }))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.GET_HW_INFO, { size: 40, dev_id: 1 }))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_SET_DIRTY_TRACKING, Uint32Array.of(16, 0, 1, 0)))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_INVALIDATE, Uint32Array.of(32, 1, 0, 0, 0, 0, 0, 0)))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.FAULT_QUEUE_ALLOC, Uint32Array.of(16, 0, 0, 0)))).toBe('EOPNOTSUPP');
    });
  });
});

describe('DESTROY (iommufd_object_remove)', () => {
  it('an unknown id (0 included) ENOENT; an IOAS holding only mappings can go', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: 0 }))).toBe('ENOENT');
      const ioas = await ioasAlloc(sys, fd);
      await map(sys, fd, ioas, await buffer(sys, 2), 8192n, 0x10000n);
      await sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioas });
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioas }))).toBe('ENOENT');
    });
  });

  it('an IOAS with an attached device (through its HWPT) and that HWPT are EBUSY; after detach both go', async () => {
    await run(async (sys, b) => {
      const fd = await open(sys);
      const ctx = await ctxOf(sys, b, fd);
      const ioas = await ioasAlloc(sys, fd);
      const idev = bindEdu(b, ctx);
      const hwpt = ctx.attachDevice(idev, ioas);
      expect(hwpt).toBe(3);
      expect(idev.id).toBe(2);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioas }))).toBe('EBUSY');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: hwpt }))).toBe('EBUSY');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: idev.id }))).toBe('EBUSY');
      ctx.detachDevice(idev);
      // The automatic HWPT went with its last device.
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: hwpt }))).toBe('ENOENT');
      await sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioas });
      ctx.unbindDevice(idev);
    });
  });
});

describe('IOAS_MAP (iommufd_ioas_map, iopt_map_user_pages)', () => {
  it('checks in order: EOVERFLOW (ULONG_MAX), EINVAL (no R/W), ENOENT, EINVAL (length 0), EOVERFLOW (wrap), EEXIST', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(map(sys, fd, 9, 0n, U64_MAX, 0n, 0))).toBe('EOVERFLOW');
      expect(await errnoOf(map(sys, fd, 9, 0n, 4096n, U64_MAX, 0))).toBe('EOVERFLOW');
      expect(await errnoOf(map(sys, fd, 9, 0n, 4096n, 0n, F.FIXED_IOVA))).toBe('EINVAL');
      expect(await errnoOf(map(sys, fd, 9, 0n, 4096n))).toBe('ENOENT');
      const ioas = await ioasAlloc(sys, fd);
      expect(await errnoOf(map(sys, fd, ioas, 0x1000n, 0n))).toBe('EINVAL');
      expect(await errnoOf(map(sys, fd, ioas, 0x1000n, U64_MAX - 0xfffn))).toBe('EINVAL');
      expect(await errnoOf(map(sys, fd, ioas, U64_MAX - 0x2000n, 0x3000n))).toBe('EOVERFLOW');
      expect(await errnoOf(map(sys, fd, ioas, 0x1000n, 0x2000n, U64_MAX - 0x1000n))).toBe('EOVERFLOW');
      await map(sys, fd, ioas, 0x1000n, 0x2000n, 0x10000n);
      expect(await errnoOf(map(sys, fd, ioas, 0x1000n, 0x1000n, 0x11000n))).toBe('EEXIST');
    });
  });

  it('with no device: any alignment and unmapped addresses are accepted (pinning is lazy)', async () => {
    const b = await run(async (sys) => {
      const fd = await open(sys);
      const ioas = await ioasAlloc(sys, fd);
      await map(sys, fd, ioas, 0x1234n, 3n, 0x5001n);
      await map(sys, fd, ioas, 0xdead_0000n, 1n << 40n, 1n << 44n);
      const r = await ranges(sys, fd, ioas);
      expect(r).toEqual({ num: 1, alignment: 1n, list: [{ start: 0n, last: U64_MAX }] });
    });
    expect(b.kernel.userPages.pinned).toBe(0);
  });

  it('automatic IOVAs are never 0, aligned to roundup_pow_of_two(length) and the VA, ENOSPC when nothing fits', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      const ioas = await ioasAlloc(sys, fd);
      const va = await buffer(sys, 16);
      expect(await map(sys, fd, ioas, va, 4096n, 0n, RW)).toBe(0x1000n);
      expect(await map(sys, fd, ioas, va, 0x3000n, 0n, RW)).toBe(0x4000n);
      // The lowest set bit of the VA caps the alignment; its page offset is kept.
      expect(await map(sys, fd, ioas, 0x7000_1800n, 0x800n, 0n, RW)).toBe(0x2800n);
      const allow = encode(iommu_iova_range, { start: 0x10_0000n, last: 0x10_3fffn });
      const m = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      for (let i = 0; i < 16; i++) m.write8(i, allow[i] as number);
      await sys.ioctl(fd, IOMMUFD.IOAS_ALLOW_IOVAS, { size: 24, ioas_id: ioas, num_iovas: 1, allowed_iovas: m.addr });
      expect(await map(sys, fd, ioas, va, 0x2000n, 0n, RW)).toBe(0x10_0000n);
      expect(await map(sys, fd, ioas, va, 0x2000n, 0n, RW)).toBe(0x10_2000n);
      expect(await errnoOf(map(sys, fd, ioas, va, 0x1000n, 0n, RW))).toBe('ENOSPC');
      // A fixed IOVA ignores the allowed list.
      await map(sys, fd, ioas, va, 0x1000n, 0x20_0000n);
    });
  });
});

describe('more edges', () => {
  it('a size past the readable memory EFAULT (the tail check); an automatic IOVA for half the space EOVERFLOW', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_ALLOC, Uint32Array.of(0xffff_ffff, 0, 0)))).toBe('EFAULT');
      const ioas = await ioasAlloc(sys, fd);
      expect(await errnoOf(map(sys, fd, ioas, 0x1000n, 1n << 63n, 0n, RW))).toBe('EOVERFLOW');
    });
  });

  it('HUGE_PAGES off is refused once a domain has areas (EINVAL); GET_HW_INFO on a bound device EOPNOTSUPP', async () => {
    const b = boot();
    await run(async (sys) => {
      const fd = await open(sys);
      const ctx = await ctxOf(sys, b, fd);
      const ioas = await ioasAlloc(sys, fd);
      await map(sys, fd, ioas, await buffer(sys, 1), 0x1000n, 0x10_0000n);
      const idev = bindEdu(b, ctx);
      expect(ctx.attachDevice(idev, ioas)).toBeGreaterThan(0);
      const opt = { size: 24, option_id: IOMMU_OPTION_ID.HUGE_PAGES, op: IOMMU_OPTION_OP.SET, __reserved: 0, object_id: ioas, val64: 0n };
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.GET_HW_INFO, { size: 40, dev_id: idev.id }))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.HWPT_ALLOC, { size: 48, dev_id: idev.id, pt_id: ioas }))).toBe('EOPNOTSUPP');
      ctx.unbindDevice(idev);
    }, { booted: b });
  });
});

describe('IOAS_UNMAP (iopt_unmap_iova)', () => {
  it('(0, U64_MAX) removes everything, even nothing; nothing there or a cut area ENOENT; length 0 EINVAL; wrap EOVERFLOW', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(unmap(sys, fd, 9, 0n, U64_MAX))).toBe('ENOENT');
      const ioas = await ioasAlloc(sys, fd);
      expect(await unmap(sys, fd, ioas, 0n, U64_MAX)).toBe(0n);
      expect(await errnoOf(unmap(sys, fd, ioas, 0x1000n, 0n))).toBe('EINVAL');
      expect(await errnoOf(unmap(sys, fd, ioas, U64_MAX, 1n))).toBe('EOVERFLOW');
      expect(await errnoOf(unmap(sys, fd, ioas, 3n, U64_MAX - 1n))).toBe('EOVERFLOW');
      expect(await errnoOf(unmap(sys, fd, ioas, 0x1000n, 0x1000n))).toBe('ENOENT');
      await map(sys, fd, ioas, 0x1000n, 0x2000n, 0x10000n);
      await map(sys, fd, ioas, 0x1000n, 0x2000n, 0x12000n);
      expect(await errnoOf(unmap(sys, fd, ioas, 0x10000n, 0x1000n))).toBe('ENOENT');
      // The first area fits and goes; the second is cut: ENOENT, the first stays removed.
      expect(await errnoOf(unmap(sys, fd, ioas, 0x10000n, 0x3000n))).toBe('ENOENT');
      expect(await errnoOf(unmap(sys, fd, ioas, 0x10000n, 0x2000n))).toBe('ENOENT');
      expect(await unmap(sys, fd, ioas, 0n, 0x100000n)).toBe(0x2000n);
      await map(sys, fd, ioas, 0x1000n, 0x2000n, 0x10000n);
      await map(sys, fd, ioas, 0x1000n, 0x2000n, 0x12000n);
      expect(await unmap(sys, fd, ioas, 0n, U64_MAX)).toBe(0x4000n);
    });
  });
});

describe('IOAS_COPY (iopt_get_pages, iopt_map_pages)', () => {
  it('a contiguous source (sub-ranges allowed) copies; a hole ENOENT; no R/W EINVAL; unknown ids ENOENT; WRITEABLE over read-only pages EPERM', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      const a = await ioasAlloc(sys, fd);
      const b = await ioasAlloc(sys, fd);
      const va = await buffer(sys, 4);
      await map(sys, fd, a, va, 0x2000n, 0x10000n);
      await map(sys, fd, a, va + 0x2000n, 0x2000n, 0x12000n, F.FIXED_IOVA | F.READABLE);
      const copy = (length: bigint, src: bigint, dst: bigint, flags: number = F.FIXED_IOVA | F.READABLE): Record<string, number | bigint> =>
        ({ size: 40, flags, dst_ioas_id: b, src_ioas_id: a, length, dst_iova: dst, src_iova: src });
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, copy(0x1000n, 0x10000n, 0n, F.FIXED_IOVA)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, { ...copy(0x1000n, 0x10000n, 0n), src_ioas_id: 9 }))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, { ...copy(0x1000n, 0x10000n, 0n), dst_ioas_id: 9 }))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, copy(0x1000n, 0x14000n, 0n)))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, copy(0n, 0x10000n, 0n)))).toBe('EINVAL');
      await sys.ioctl(fd, IOMMUFD.IOAS_COPY, copy(0x3000n, 0x11000n, 0x50000n));
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_COPY, copy(0x1000n, 0x12000n, 0x60000n, F.FIXED_IOVA | RW)))).toBe('EPERM');
      const auto = copy(0x1000n, 0x10000n, 0n, F.READABLE);
      await sys.ioctl(fd, IOMMUFD.IOAS_COPY, auto);
      expect(auto['dst_iova']).toBe(0x1000n);
      // Two areas came from the three pages copied: the copy cut at the source's area boundary.
      expect(await unmap(sys, fd, b, 0x50000n, 0x3000n)).toBe(0x3000n);
    });
  });
});

describe('IOAS_IOVA_RANGES and ALLOW_IOVAS (iommufd_ioas_iova_ranges, iommufd_ioas_allow_iovas)', () => {
  it('a short array EMSGSIZE with num_iovas the count needed; unknown IOAS ENOENT', async () => {
    await run(async (sys, b) => {
      const fd = await open(sys);
      expect(await errnoOf(ranges(sys, fd, 9))).toBe('ENOENT');
      const ioas = await ioasAlloc(sys, fd);
      const ctx = await ctxOf(sys, b, fd);
      const idev = bindEdu(b, ctx);
      expect(ctx.attachDevice(idev, ioas)).toBeGreaterThan(0);
      const r = await ranges(sys, fd, ioas);
      expect(r).toEqual({ num: 2, alignment: 4096n, list: [{ start: 0n, last: 0xfedf_ffffn }, { start: 0xfef0_0000n, last: (1n << 48n) - 1n }] });
      const m = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      const short = { size: 32, ioas_id: ioas, num_iovas: 1, __reserved: 0, allowed_iovas: m.addr, out_iova_alignment: 0n };
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.IOAS_IOVA_RANGES, short))).toBe('EMSGSIZE');
      expect(short.num_iovas).toBe(2);
      expect(m.read64(8)).toBe(0xfedf_ffffn);
      ctx.unbindDevice(idev);
      expect((await ranges(sys, fd, ioas)).list).toEqual([{ start: 0n, last: U64_MAX }]);
    });
  });

  it('start >= last EINVAL, overlaps EINVAL, a bad pointer EFAULT, crossing a reserved region EADDRINUSE; num 0 clears', async () => {
    await run(async (sys, b) => {
      const fd = await open(sys);
      const ioas = await ioasAlloc(sys, fd);
      const m = await sys.mmap(null, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      const put = (i: number, start: bigint, last: bigint): void => {
        m.write64(i * 16, start);
        m.write64(i * 16 + 8, last);
      };
      const allow = (n: number, addr: bigint = m.addr): Promise<number> =>
        sys.ioctl(fd, IOMMUFD.IOAS_ALLOW_IOVAS, { size: 24, ioas_id: ioas, num_iovas: n, __reserved: 0, allowed_iovas: addr });
      put(0, 0x1000n, 0x1000n);
      expect(await errnoOf(allow(1))).toBe('EINVAL');
      put(0, 0x1000n, 0x2fffn);
      put(1, 0x2000n, 0x4fffn);
      expect(await errnoOf(allow(2))).toBe('EINVAL');
      expect(await errnoOf(allow(1, 0n))).toBe('EFAULT');
      put(0, 0xfe00_0000n, 0xffff_ffffn);
      await allow(1);
      const ctx = await ctxOf(sys, b, fd);
      const idev = bindEdu(b, ctx);
      // The MSI window cannot be reserved over an allowed range: the attach fails.
      expect(ctx.attachDevice(idev, ioas)).toBe(-98);
      put(0, 0x10_0000n, 0x1f_ffffn);
      await allow(1);
      expect(ctx.attachDevice(idev, ioas)).toBeGreaterThan(0);
      put(0, 0xfee0_0000n, 0xfee0_ffffn);
      expect(await errnoOf(allow(1))).toBe('EADDRINUSE');
      await allow(0);
      ctx.unbindDevice(idev);
    });
  });
});

describe('OPTION and VFIO_IOAS (iommufd_option, iommufd_vfio_ioas)', () => {
  it('RLIMIT_MODE: GET 0; SET needs CAP_SYS_RESOURCE, an empty table, 0 or 1; object_id EOPNOTSUPP; unknown op/option EOPNOTSUPP', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      const opt = (op: number, val64 = 0n, object_id = 0, option_id: number = IOMMU_OPTION_ID.RLIMIT_MODE): Record<string, number | bigint> =>
        ({ size: 24, option_id, op, __reserved: 0, object_id, val64 });
      const g = opt(IOMMU_OPTION_OP.GET, 7n);
      await sys.ioctl(fd, IOMMUFD.OPTION, g);
      expect(g['val64']).toBe(0n);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.SET, 2n)))).toBe('EINVAL');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.GET, 0n, 1)))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(2)))).toBe('EOPNOTSUPP');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(0, 0n, 0, 5)))).toBe('EOPNOTSUPP');
      await sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.SET, 1n));
      const g2 = opt(IOMMU_OPTION_OP.GET);
      await sys.ioctl(fd, IOMMUFD.OPTION, g2);
      expect(g2['val64']).toBe(1n);
      const ioas = await ioasAlloc(sys, fd);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.SET, 0n)))).toBe('EBUSY');
      // HUGE_PAGES on an IOAS: GET 1; SET 0 then alignment rises to PAGE_SIZE; a non-IOAS id ENOENT.
      const h = opt(IOMMU_OPTION_OP.GET, 0n, ioas, IOMMU_OPTION_ID.HUGE_PAGES);
      await sys.ioctl(fd, IOMMUFD.OPTION, h);
      expect(h['val64']).toBe(1n);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.GET, 0n, 9, IOMMU_OPTION_ID.HUGE_PAGES)))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.SET, 3n, ioas, IOMMU_OPTION_ID.HUGE_PAGES)))).toBe('EINVAL');
      await sys.ioctl(fd, IOMMUFD.OPTION, opt(IOMMU_OPTION_OP.SET, 0n, ioas, IOMMU_OPTION_ID.HUGE_PAGES));
      expect((await ranges(sys, fd, ioas)).alignment).toBe(4096n);
    });
    await run(async (sys) => {
      const fd = await open(sys);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.OPTION, { size: 24, option_id: 0, op: 0, val64: 1n }))).toBe('EPERM');
    }, { spawn: { uid: 0, caps: ['IPC_LOCK'] } });
  });

  it('VFIO_IOAS: GET without one ENODEV; SET a bad id ENOENT; SET/GET/CLEAR; destroying it clears it', async () => {
    await run(async (sys) => {
      const fd = await open(sys);
      const v = (op: number, ioas_id = 0): { size: number; ioas_id: number; op: number; __reserved: number } => ({ size: 12, ioas_id, op, __reserved: 0 });
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.GET)))).toBe('ENODEV');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.SET, 5)))).toBe('ENOENT');
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(7)))).toBe('EOPNOTSUPP');
      const ioas = await ioasAlloc(sys, fd);
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.SET, ioas));
      const g = v(IOMMU_VFIO_IOAS.GET);
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, g);
      expect(g.ioas_id).toBe(ioas);
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.CLEAR));
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.GET)))).toBe('ENODEV');
      await sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.SET, ioas));
      await sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: ioas });
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.VFIO_IOAS, v(IOMMU_VFIO_IOAS.GET)))).toBe('ENODEV');
    });
  });
});

describe('attach through the in-kernel API (iommufd_device_attach) with the edu behind VT-d', () => {
  it('pins at attach, device DMA reaches the pinned pages, UNMAP faults it, close unpins and unaccounts', async () => {
    const b = boot();
    await run(async (sys) => {
      const fd = await open(sys);
      const ctx = await ctxOf(sys, b, fd);
      const ioas = await ioasAlloc(sys, fd);
      const va = await buffer(sys, 4);
      await map(sys, fd, ioas, va, 0x2000n, 0x10_0000n);
      expect(b.kernel.userPages.pinned).toBe(0);
      const idev = bindEdu(b, ctx);
      const port = devicePort(b.machine, '00:03.0');
      b.kernel.pci.device(EDU)?.setMaster();
      expect(port.read(0x10_0000, 4).status).not.toBe(DmaStatus.OK);
      expect(ctx.attachDevice(idev, ioas)).toBeGreaterThan(0);
      expect(b.kernel.userPages.pinned).toBe(2);
      expect(userLockedVm(b.kernel, 0)).toBe(2);
      const r = port.read(0x10_1000, 4);
      expect(r.status).toBe(DmaStatus.OK);
      expect(new DataView(r.bytes.buffer).getUint32(0, true)).toBe(0xa500_0001);
      // A MAP with the domain attached pins and maps at once.
      await map(sys, fd, ioas, va + 0x2000n, 0x2000n, 0x20_0000n);
      expect(b.kernel.userPages.pinned).toBe(4);
      expect(new DataView(port.read(0x20_1000, 4).bytes.buffer).getUint32(0, true)).toBe(0xa500_0003);
      // Misaligned now: EINVAL; the MSI window is reserved: EINVAL; past the aperture: EINVAL.
      expect(await errnoOf(map(sys, fd, ioas, va, 0x800n, 0x30_0000n))).toBe('EINVAL');
      expect(await errnoOf(map(sys, fd, ioas, va, 0x1000n, 0xfee0_0000n))).toBe('EINVAL');
      expect(await errnoOf(map(sys, fd, ioas, va, 0x1000n, 1n << 48n))).toBe('EINVAL');
      // A bad VA fails at once with a domain attached.
      expect(await errnoOf(map(sys, fd, ioas, 0x7000_0000n, 0x1000n, 0x40_0000n))).toBe('EFAULT');
      await unmap(sys, fd, ioas, 0x10_0000n, 0x2000n);
      expect(port.read(0x10_1000, 4).status).not.toBe(DmaStatus.OK);
      expect(b.kernel.userPages.pinned).toBe(2);
      await sys.close(fd);
      // The bound device holds the context's file: nothing is released until it is unbound.
      expect(b.kernel.userPages.pinned).toBe(2);
      ctx.unbindDevice(idev);
      expect(b.kernel.userPages.pinned).toBe(0);
    }, { booted: b, spawn: { uid: 0, caps: ['SYS_RESOURCE'] } });
    expect(b.kernel.iommu?.groupOf(b.kernel.pci.device(EDU) ?? (undefined as never))?.owner).toBeUndefined();
  });

  it('attaching again moves the device (iommufd_device_replace); an unknown pt_id ENOENT; the old automatic HWPT goes', async () => {
    const b = boot();
    await run(async (sys) => {
      const fd = await open(sys);
      const ctx = await ctxOf(sys, b, fd);
      const va = await buffer(sys, 2);
      const a = await ioasAlloc(sys, fd);
      const c = await ioasAlloc(sys, fd);
      await map(sys, fd, a, va, 0x1000n, 0x10_0000n);
      await map(sys, fd, c, va + 0x1000n, 0x1000n, 0x10_0000n);
      const idev = bindEdu(b, ctx);
      b.kernel.pci.device(EDU)?.setMaster();
      const port = devicePort(b.machine, '00:03.0');
      const word = (): number => new DataView(port.read(0x10_0000, 4).bytes.buffer).getUint32(0, true);
      expect(ctx.attachDevice(idev, 99)).toBe(-2);
      expect(ctx.attachDevice(idev, idev.id)).toBe(-2);
      const h = ctx.attachDevice(idev, a);
      expect(word()).toBe(0xa500_0000);
      expect(ctx.attachDevice(idev, h)).toBe(h);
      expect(ctx.attachDevice(idev, a)).toBe(h);
      const h2 = ctx.attachDevice(idev, c);
      expect(h2).not.toBe(h);
      expect(word()).toBe(0xa500_0001);
      expect(await errnoOf(sys.ioctl(fd, IOMMUFD.DESTROY, { size: 8, id: h }))).toBe('ENOENT');
      expect(b.kernel.userPages.pinned).toBe(1);
      // A failed move (memory gone under the new IOAS) leaves the old attachment in place.
      const g = await ioasAlloc(sys, fd);
      await map(sys, fd, g, 0x7000_0000n, 0x1000n, 0x10_0000n);
      expect(ctx.attachDevice(idev, g)).toBe(-14);
      expect(word()).toBe(0xa500_0001);
      ctx.detachDevice(idev);
      expect(port.read(0x10_0000, 4).status).not.toBe(DmaStatus.OK);
      ctx.unbindDevice(idev);
      expect(b.kernel.userPages.pinned).toBe(0);
    }, { booted: b });
  });

  it('an area whose memory has gone fails the attach with EFAULT (fork_gone); misaligned areas EADDRINUSE; memlock ENOMEM', async () => {
    const b = boot();
    await run(async (sys) => {
      const fd = await open(sys);
      const ctx = await ctxOf(sys, b, fd);
      const idev = bindEdu(b, ctx);
      const gone = await ioasAlloc(sys, fd);
      await map(sys, fd, gone, 0x7000_0000n, 0x1000n, 0x10_0000n);
      expect(ctx.attachDevice(idev, gone)).toBe(-14);
      const odd = await ioasAlloc(sys, fd);
      await map(sys, fd, odd, await buffer(sys, 1), 0x800n, 0x10_0000n);
      expect(ctx.attachDevice(idev, odd)).toBe(-98);
      const big = await ioasAlloc(sys, fd);
      await map(sys, fd, big, await buffer(sys, 4), 0x4000n, 0x10_0000n);
      expect(ctx.attachDevice(idev, big)).toBe(-12);
      expect(b.kernel.userPages.pinned).toBe(0);
      expect(userLockedVm(b.kernel, 0)).toBe(0);
      ctx.unbindDevice(idev);
    }, { booted: b, spawn: { uid: 0, caps: [], rlimits: { memlock: 3 * 4096 } } });
  });

  it('user accounting charges the uid; RLIMIT_MODE 1 charges the mm (VmLck); closing leaves nothing', async () => {
    const b = boot();
    await run(async (sys) => {
      for (const mode of [0n, 1n]) {
        const fd = await open(sys);
        await sys.ioctl(fd, IOMMUFD.OPTION, { size: 24, option_id: 0, op: 0, val64: mode });
        const ctx = await ctxOf(sys, b, fd);
        const idev = bindEdu(b, ctx);
        const ioas = await ioasAlloc(sys, fd);
        await map(sys, fd, ioas, await buffer(sys, 3), 0x3000n, 0x10_0000n);
        expect(ctx.attachDevice(idev, ioas)).toBeGreaterThan(0);
        const mm = b.kernel.task(await sys.getpid())?.mm;
        expect([userLockedVm(b.kernel, 0), mm?.lockedVm]).toEqual(mode === 0n ? [3, 0] : [0, 3]);
        ctx.unbindDevice(idev);
        await sys.close(fd);
        expect([b.kernel.userPages.pinned, userLockedVm(b.kernel, 0), mm?.lockedVm]).toEqual([0, 0, 0]);
      }
    }, { booted: b, spawn: { uid: 0, caps: ['SYS_RESOURCE'] } });
  });
});
