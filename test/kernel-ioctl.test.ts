import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMachine } from '../machine/index.ts';
import { bootKernel, type Kernel } from '../kernel-shim/kernel.ts';
import type { Sys } from '../kernel-shim/task/sys.ts';
import type { SpawnOptions } from '../kernel-shim/task/task.ts';
import { MAP, O, PROT } from '../kernel-shim/uapi/linux.ts';
import { _IO, _IOC, _IOC_DIR, _IOC_NR, _IOC_SIZE, _IOC_TYPE, _IOR, _IOW, _IOWR, IOC_READ, IOC_WRITE } from '../kernel-shim/uapi/ioctl.ts';
import { struct, offsetof, offsetofend, sizeof, type AnyLayout, type Field, type ValueOf } from '../kernel-shim/uapi/layout.ts';
import { decode, encode, encodedLength } from '../kernel-shim/uapi/codec.ts';
import { ioctlLayout, withLayout } from '../kernel-shim/uapi/registry.ts';
import { buildCapChain, infoCaps, walkCapChain } from '../kernel-shim/uapi/capchain.ts';
import { SysError } from '../kernel-shim/errno.ts';
import * as vfio from '../kernel-shim/uapi/vfio.ts';
import * as iommufd from '../kernel-shim/uapi/iommufd.ts';
import * as dmabuf from '../kernel-shim/uapi/dma-buf.ts';
import { UIO_IOC, uio_dmabuf_args } from '../kernel-shim/uapi/uio.ts';
import {
  DMASIM_TEST, DMASIM_TEST_EXTRA, DMASIM_TEST_INFO_FLAG, DMASIM_TEST_PIN_FLAG, DMASIM_TEST_SIZED_FLAG,
  dmasim_test_cap, dmasim_test_info, dmasim_test_pin, dmasim_test_sized, dmasim_test_sleep,
} from '../kernel-shim/uapi/testdev.ts';

const PAGE = 4096;
const RW = PROT.READ | PROT.WRITE;
const ANON = MAP.PRIVATE | MAP.ANONYMOUS;

async function run(
  main: (sys: Sys, kernel: Kernel) => Promise<unknown>,
  opts: SpawnOptions = {},
  testDevice = true,
): Promise<{ status: number; kernel: Kernel }> {
  const machine = createMachine({ memory: { size: 64 << 20 } });
  const kernel = bootKernel(machine, { testDevice });
  const p = kernel.spawn({ comm: 't', ...opts }, (sys) => main(sys, kernel));
  await machine.sim.run();
  return { status: await p.exited, kernel };
}

async function expectErrno(code: string, p: Promise<unknown>): Promise<void> {
  await expect(p).rejects.toMatchObject({ code, syscall: 'ioctl' });
}

describe('request numbers', () => {
  it('_IOC encodes and decodes as asm-generic', () => {
    const r = _IOWR('H', 0, 24);
    expect(r).toBe(0xc0184800);
    expect(_IOC_DIR(r)).toBe(IOC_READ | IOC_WRITE);
    expect(_IOC_TYPE(r)).toBe(0x48);
    expect(_IOC_NR(r)).toBe(0);
    expect(_IOC_SIZE(r)).toBe(24);
    expect(_IOR('b', 7, 0x3fff)).toBe(0xbfff6207);
    expect(_IOW(0xff, 0xff, 0)).toBe(0x4000ffff);
    expect(_IO(';', 100)).toBe(0x3b64);
    expect(() => _IOC(4, 'x', 0, 0)).toThrow(RangeError);
    expect(() => _IOC(0, 'x', 256, 0)).toThrow(RangeError);
    expect(() => _IOC(0, 'x', 0, 1 << 14)).toThrow(RangeError);
    expect(() => _IOC(0, 256, 0, 0)).toThrow(RangeError);
  });

  it('VFIO numbers match spec section 1.2', () => {
    const V = vfio.VFIO;
    expect([V.GET_API_VERSION, V.CHECK_EXTENSION, V.SET_IOMMU]).toEqual([0x3b64, 0x3b65, 0x3b66]);
    expect([V.GROUP_GET_STATUS, V.GROUP_SET_CONTAINER, V.GROUP_UNSET_CONTAINER, V.GROUP_GET_DEVICE_FD]).toEqual([0x3b67, 0x3b68, 0x3b69, 0x3b6a]);
    expect([V.DEVICE_GET_INFO, V.DEVICE_GET_REGION_INFO, V.DEVICE_GET_IRQ_INFO, V.DEVICE_SET_IRQS, V.DEVICE_RESET]).toEqual([0x3b6b, 0x3b6c, 0x3b6d, 0x3b6e, 0x3b6f]);
    expect([V.IOMMU_GET_INFO, V.IOMMU_MAP_DMA, V.IOMMU_UNMAP_DMA, V.IOMMU_DIRTY_PAGES]).toEqual([0x3b70, 0x3b71, 0x3b72, 0x3b75]);
    expect([V.DEVICE_GET_PCI_HOT_RESET_INFO, V.DEVICE_PCI_HOT_RESET, V.DEVICE_FEATURE]).toEqual([0x3b70, 0x3b71, 0x3b75]);
    expect([V.DEVICE_BIND_IOMMUFD, V.DEVICE_ATTACH_IOMMUFD_PT, V.DEVICE_DETACH_IOMMUFD_PT]).toEqual([0x3b76, 0x3b77, 0x3b78]);
    expect(vfio.VFIO_EXT).toMatchObject({ TYPE1_IOMMU: 1, TYPE1v2_IOMMU: 3, NOIOMMU_IOMMU: 8, UNMAP_ALL: 9, UPDATE_VADDR: 10 });
  });

  it('iommufd numbers match spec section 3.1', () => {
    const I = iommufd.IOMMUFD;
    expect([I.DESTROY, I.IOAS_ALLOC, I.IOAS_ALLOW_IOVAS, I.IOAS_COPY, I.IOAS_IOVA_RANGES, I.IOAS_MAP, I.IOAS_UNMAP])
      .toEqual([0x3b80, 0x3b81, 0x3b82, 0x3b83, 0x3b84, 0x3b85, 0x3b86]);
    expect([I.OPTION, I.VFIO_IOAS, I.HWPT_ALLOC, I.GET_HW_INFO, I.IOAS_MAP_FILE]).toEqual([0x3b87, 0x3b88, 0x3b89, 0x3b8a, 0x3b8f]);
    expect(I.HW_QUEUE_ALLOC).toBe(0x3b94);
  });

  it('dma-buf, dma-heap, udmabuf and UIO RFC numbers match spec sections 5.5 and 6', () => {
    const D = dmabuf.DMA_BUF;
    expect(D.IOCTL_SYNC).toBe(0x40086200);
    expect(D.SET_NAME).toBe(0x40086201);
    expect(D.SET_NAME_A).toBe(0x40046201);
    expect(D.SET_NAME_B).toBe(0x40086201);
    expect(D.IOCTL_EXPORT_SYNC_FILE).toBe(0xc0086202);
    expect(D.IOCTL_IMPORT_SYNC_FILE).toBe(0x40086203);
    expect(D.HEAP_IOCTL_ALLOC).toBe(0xc0184800);
    expect(D.UDMABUF_CREATE).toBe(0x40187542);
    expect(D.UDMABUF_CREATE_LIST).toBe(0x40087543);
    expect(UIO_IOC.MAP_DMABUF).toBe(0xc0205501);
    expect(UIO_IOC.UNMAP_DMABUF).toBe(0xc0205502);
  });
});

describe('struct layouts', () => {
  it('sizes and minsz match spec sections 1.3 and 3.1', () => {
    const cases: [AnyLayout, number, number][] = [
      [vfio.vfio_group_status, 8, 8], [vfio.vfio_device_info, 24, 16], [vfio.vfio_region_info, 32, 32],
      [vfio.vfio_irq_info, 16, 16], [vfio.vfio_irq_set, 20, 20], [vfio.vfio_iommu_type1_info, 24, 16],
      [vfio.vfio_iommu_type1_dma_map, 32, 32], [vfio.vfio_iommu_type1_dma_unmap, 24, 24], [vfio.vfio_info_cap_header, 8, 8],
      [vfio.vfio_device_bind_iommufd, 24, 16], [vfio.vfio_device_attach_iommufd_pt, 16, 12],
      [vfio.vfio_device_detach_iommufd_pt, 12, 8], [vfio.vfio_device_feature, 8, 8],
      [iommufd.iommu_destroy, 8, 8], [iommufd.iommu_ioas_alloc, 12, 12], [iommufd.iommu_ioas_allow_iovas, 24, 24],
      [iommufd.iommu_ioas_copy, 40, 40], [iommufd.iommu_ioas_iova_ranges, 32, 32], [iommufd.iommu_ioas_map, 40, 40],
      [iommufd.iommu_ioas_unmap, 24, 24], [iommufd.iommu_option, 24, 24], [iommufd.iommu_vfio_ioas, 12, 12],
      [iommufd.iommu_hwpt_alloc, 48, 24], [iommufd.iommu_hw_info, 40, 32], [iommufd.iommu_ioas_map_file, 40, 40],
      [dmabuf.dma_heap_allocation_data, 24, 24], [dmabuf.udmabuf_create, 24, 24], [dmabuf.udmabuf_create_list, 8, 8],
      [uio_dmabuf_args, 32, 32],
    ];
    for (const [l, size, min] of cases) {
      expect([l.name, sizeof(l), l.minsz]).toEqual([l.name, size, min]);
    }
    expect(vfio.vfio_device_info.convention).toBe('argsz');
    expect(iommufd.iommu_ioas_map.convention).toBe('size');
    expect(dmabuf.dma_buf_sync.convention).toBe('fixed');
  });

  it('computes C offsets: u64 alignment, nested structs, fixed arrays, flexible arrays', () => {
    expect(offsetof(vfio.vfio_iommu_type1_info, 'iova_pgsizes')).toBe(8);
    expect(offsetof(vfio.vfio_iommu_type1_info, 'cap_offset')).toBe(16);
    expect(offsetof(uio_dmabuf_args, 'dma_addr')).toBe(8);
    expect(offsetof(uio_dmabuf_args, 'dir')).toBe(24);
    expect(offsetof(iommufd.iommu_hw_info, '__reserved')).toBe(29);
    expect(offsetofend(iommufd.iommu_hw_info, '__reserved')).toBe(32);
    expect(offsetof(vfio.vfio_irq_set, 'data')).toBe(20);
    expect(offsetof(vfio.vfio_region_info_cap_sparse_mmap, 'areas')).toBe(16);
    expect(offsetof(dmabuf.udmabuf_create_list, 'list')).toBe(8);
    const odd = struct('odd', [['a', 'u8'], ['b', 'u64'], ['c', 'u16']], { flex: ['d', 'u32'] });
    expect(odd.fields.map((f: Field) => f.offset)).toEqual([0, 8, 16]);
    expect(offsetof(odd, 'd')).toBe(20);
    expect(sizeof(odd)).toBe(24);
    expect(() => struct('bad', [['a', 'u32']], { expectSize: 8 })).toThrow(RangeError);
    expect(() => struct('bad', [['a', 'u32'], ['a', 'u8']])).toThrow(RangeError);
    expect(() => struct('bad', [['a', 'u32']], { minEnd: 'b' })).toThrow(RangeError);
  });
});

describe('codec', () => {
  it('encodes with C truncation, zero for missing or non-numeric fields', () => {
    const b = encode(vfio.vfio_device_bind_iommufd, { argsz: -1, flags: 2 ** 32 + 5, iommufd: 0xffffffff, token_uuid_ptr: -1n, out_devid: 'x' });
    const dv = new DataView(b.buffer);
    expect(dv.getUint32(0, true)).toBe(0xffffffff);
    expect(dv.getUint32(4, true)).toBe(5);
    expect(dv.getUint32(12, true)).toBe(0);
    expect(dv.getBigUint64(16, true)).toBe(2n ** 64n - 1n);
    const d = decode(vfio.vfio_device_bind_iommufd, b);
    expect(d.iommufd).toBe(-1);
    expect(d.token_uuid_ptr).toBe(2n ** 64n - 1n);
    expect(encode(vfio.vfio_group_status, {})).toEqual(new Uint8Array(8));
    expect(encode(vfio.vfio_group_status, {}, 12).length).toBe(12);
  });

  it('round-trips nested structs, fixed arrays and flexible arrays of structs', () => {
    const sparse = {
      header: { id: vfio.VFIO_REGION_INFO_CAP.SPARSE_MMAP, version: 1, next: 0 }, nr_areas: 2, reserved: 0,
      areas: [{ offset: 0n, size: 0x1000n }, { offset: 0x3000n, size: 2n ** 63n }],
    };
    const bytes = encode(vfio.vfio_region_info_cap_sparse_mmap, sparse);
    expect(bytes.length).toBe(16 + 2 * 16);
    expect(decode(vfio.vfio_region_info_cap_sparse_mmap, bytes)).toEqual(sparse);
    const hw = { size: 40, flags: 0, dev_id: 3, data_len: 0, data_uptr: 0n, out_data_type: 1, out_max_pasid_log2: 20, __reserved: new Uint8Array([1, 2, 3]), out_capabilities: 5n };
    const into = { __reserved: new Uint8Array(3) };
    const keep = into.__reserved;
    const got = decode(iommufd.iommu_hw_info, encode(iommufd.iommu_hw_info, hw), into);
    expect(got).toEqual(hw);
    expect(got.__reserved).toBe(keep);
    const list = { flags: 1, count: 1, list: [{ memfd: 3, __pad: 0, offset: 4096n, size: 8192n }] };
    expect(decode(dmabuf.udmabuf_create_list, encode(dmabuf.udmabuf_create_list, list))).toEqual(list);
  });

  it('gives decoded values C-shaped types (u64 as bigint, arrays as typed arrays)', () => {
    const r: ValueOf<typeof vfio.vfio_region_info> = decode(vfio.vfio_region_info, new Uint8Array(32));
    const size: bigint = r.size;
    const idx: number = r.index;
    const caps: Uint8Array | undefined = r.caps;
    const hw = decode(iommufd.iommu_hw_info, new Uint8Array(40));
    const res: Uint8Array = hw.__reserved;
    // @ts-expect-error a u64 field is a bigint, not a number
    const wrong: number = r.offset;
    expect([size, idx, caps, res.length, wrong]).toEqual([0n, 0, undefined, 3, 0n]);
  });

  it('takes any typed array as the bytes of a u8 flexible array', () => {
    const fds = new Int32Array([5, -1]);
    const obj = { argsz: 28, flags: 0, index: 2, start: 0, count: 2, data: fds };
    const b = encode(vfio.vfio_irq_set, obj);
    expect(b.length).toBe(28);
    expect(new DataView(b.buffer).getInt32(24, true)).toBe(-1);
    new DataView(b.buffer).setInt32(20, 9, true);
    decode(vfio.vfio_irq_set, b, obj);
    expect(obj.data).toBe(fds);
    expect([...fds]).toEqual([9, -1]);
  });

  it('property: decode(encode(v)) === v for every registered layout (fixed seed)', () => {
    const arbScalar = (t: string): fc.Arbitrary<number | bigint> => {
      switch (t) {
        case 'u8': return fc.integer({ min: 0, max: 0xff });
        case 's8': return fc.integer({ min: -128, max: 127 });
        case 'u16': return fc.integer({ min: 0, max: 0xffff });
        case 's16': return fc.integer({ min: -32768, max: 32767 });
        case 'u32': return fc.integer({ min: 0, max: 0xffffffff });
        case 's32': return fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 });
        case 'u64': return fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
        default: return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n });
      }
    };
    const typed: Record<string, (a: (number | bigint)[]) => unknown> = {
      u8: (a) => Uint8Array.from(a as number[]), s8: (a) => Int8Array.from(a as number[]),
      u16: (a) => Uint16Array.from(a as number[]), s16: (a) => Int16Array.from(a as number[]),
      u32: (a) => Uint32Array.from(a as number[]), s32: (a) => Int32Array.from(a as number[]),
      u64: (a) => BigUint64Array.from(a as bigint[]), s64: (a) => BigInt64Array.from(a as bigint[]),
    };
    const arbLayout = (l: AnyLayout): fc.Arbitrary<Record<string, unknown>> => {
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const f of l.fields) {
        const t = f.type;
        if (typeof t !== 'string') rec[f.name] = f.count === undefined ? arbLayout(t) : fc.array(arbLayout(t), { minLength: f.count, maxLength: f.count });
        else rec[f.name] = f.count === undefined ? arbScalar(t) : fc.array(arbScalar(t), { minLength: f.count, maxLength: f.count }).map(typed[t] as (a: (number | bigint)[]) => unknown);
      }
      return fc.record(rec);
    };
    const layouts = [
      ...Object.values(vfio), ...Object.values(iommufd), ...Object.values(dmabuf), uio_dmabuf_args,
      dmasim_test_info, dmasim_test_cap, dmasim_test_sized, dmasim_test_pin,
    ].filter((l): l is AnyLayout => typeof l === 'object' && l !== null && 'byName' in l && (l as AnyLayout).flex === undefined);
    expect(layouts.length).toBeGreaterThan(25);
    for (const l of layouts) {
      fc.assert(fc.property(arbLayout(l), (v) => {
        const b = encode(l, v);
        expect(b.length).toBe(encodedLength(l, v));
        expect(decode(l, b)).toEqual(v);
      }), { seed: 0x10c71, numRuns: 30 });
    }
  });
});

describe('ioctl registry', () => {
  it('finds layouts by request; shape and tags choose between structs sharing a number', () => {
    expect(ioctlLayout(vfio.VFIO.DEVICE_GET_REGION_INFO)).toBe(vfio.vfio_region_info);
    expect(ioctlLayout(iommufd.IOMMUFD.IOAS_MAP)).toBe(iommufd.iommu_ioas_map);
    expect(ioctlLayout(vfio.VFIO.CHECK_EXTENSION)).toBeUndefined();
    expect(ioctlLayout(0x12345678)).toBeUndefined();
    expect(ioctlLayout(vfio.VFIO.DEVICE_FEATURE, { argsz: 8, flags: 0 })).toBe(vfio.vfio_iommu_type1_dirty_bitmap);
    expect(ioctlLayout(vfio.VFIO.DEVICE_FEATURE, withLayout(vfio.vfio_device_feature, { argsz: 8, flags: 0 }))).toBe(vfio.vfio_device_feature);
    const mine = struct('my_driver_arg', [['x', 'u32']]);
    expect(ioctlLayout(0x12345678, withLayout(mine, { x: 1 }))).toBe(mine);
  });
});

describe('/dev/dmasim-test', () => {
  it('exists (mode 0666) only with testDevice', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      expect(fd).toBeGreaterThanOrEqual(0);
      await sys.close(fd);
    }, { uid: 1000 });
    await run(async (sys) => {
      await expect(sys.open('/dev/dmasim-test', O.RDWR)).rejects.toMatchObject({ code: 'ENOENT' });
    }, {}, false);
  });

  it('by-value argument: number and bigint are unsigned long', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      expect(await sys.ioctl(fd, DMASIM_TEST.VALUE)).toBe(0);
      expect(await sys.ioctl(fd, DMASIM_TEST.VALUE, 0xff)).toBe(8);
      expect(await sys.ioctl(fd, DMASIM_TEST.VALUE, 2n ** 64n - 1n)).toBe(64);
      expect(await sys.ioctl(fd, DMASIM_TEST.VALUE, -1)).toBe(64);
      expect(await sys.ioctl(fd, DMASIM_TEST.VALUE, 2n ** 64n)).toBe(0);
      await expectErrno('ENOTTY', sys.ioctl(fd, _IO(0xd5, 99), 0));
      await expectErrno('ENOTTY', sys.ioctl(fd, _IOW(0xd5, 3, 16), 0)); // PIN's nr with the wrong size
      expect([DMASIM_TEST.GET_INFO, DMASIM_TEST.PIN, DMASIM_TEST.UNPIN, DMASIM_TEST.XFORM, DMASIM_TEST.SLEEP])
        .toEqual([0xd500, 0x4018d503, 0xc018d504, 0xc010d505, 0xc010d507]);
    });
  });

  it('argsz struct: write-back into the object, caps chain, argsz raised when too small', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const a = { argsz: 24, flags: 0, index: 0, value: 0, cap_offset: 9, pad: 0 };
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, a)).toBe(0);
      expect(a).toEqual({ argsz: 24, flags: 0, index: 0, value: 0xd5000000, cap_offset: 0, pad: 0 });

      const b = { argsz: 24, flags: 0, index: 2 };
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, b)).toBe(0);
      expect(b).toMatchObject({ argsz: 24 + 32, flags: DMASIM_TEST_INFO_FLAG.CAPS, value: 0xd5000002, cap_offset: 0 });

      const c: { argsz: number; flags: number; index: number; cap_offset?: number; caps?: Uint8Array } = { argsz: b.argsz, flags: 0, index: 2 };
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, c)).toBe(0);
      expect(c.cap_offset).toBe(24);
      expect(c.caps?.length).toBe(32);
      const caps = c.caps ?? new Uint8Array();
      const first = decode(dmasim_test_cap, caps.subarray(0, 16));
      const second = decode(dmasim_test_cap, caps.subarray(16, 32));
      expect(first).toEqual({ header: { id: 1, version: 1, next: 40 }, seq: 0, pad: 0 });
      expect(second).toEqual({ header: { id: 1, version: 1, next: 0 }, seq: 1, pad: 0 });

      // argsz between minsz and sizeof: only argsz bytes come back, so cap_offset keeps the caller's value.
      const d = { argsz: 16, flags: 0, index: 1, cap_offset: 77 };
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, d)).toBe(0);
      expect(d).toMatchObject({ argsz: 40, flags: 1, value: 0xd5000001, cap_offset: 77 });

      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.GET_INFO, { argsz: 15 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.GET_INFO, { argsz: 24, flags: 1 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.GET_INFO, { argsz: 24, index: 5 }));
      // A claim past what the object can back: the caps write runs into unmapped memory.
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, { argsz: 0xffffffff, index: 1 }));
    });
  });

  it('argsz struct by raw address: EFAULT for bad addresses, EINVAL checked after the copy, read-only write-back', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      for (const bad of [0n, 0xdead0000n, 2n ** 64n - 1n, 2n ** 47n]) await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, bad));
      const m = await sys.mmap(null, PAGE, RW, ANON);
      sys.mem.writeBytes(m.addr, encode(dmasim_test_info, { argsz: 24, index: 1 }));
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, m.addr)).toBe(0);
      expect(decode(dmasim_test_info, sys.mem.readBytes(m.addr, 24))).toMatchObject({ argsz: 40, flags: 1, value: 0xd5000001 });
      // minsz straddling the end of the mapping: EFAULT before the argsz check.
      const end = m.addr + BigInt(PAGE);
      sys.mem.writeBytes(end - 8n, encode(dmasim_test_info, { argsz: 4 }).subarray(0, 8));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, end - 8n));
      // The chain written past the struct runs off the mapping: EFAULT.
      sys.mem.writeBytes(end - 24n, encode(dmasim_test_info, { argsz: 40, index: 1 }));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, end - 24n));
      // Read-only memory: the bad argsz is found before any write; a good one fails at the write-back.
      sys.mem.writeBytes(m.addr, encode(dmasim_test_info, { argsz: 8 }));
      await sys.mprotect(m.addr, PAGE, PROT.READ);
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.GET_INFO, m.addr));
      await sys.mprotect(m.addr, PAGE, RW);
      sys.mem.writeBytes(m.addr, encode(dmasim_test_info, { argsz: 24 }));
      await sys.mprotect(m.addr, PAGE, PROT.READ);
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, m.addr));
    });
  });

  it('a typed array is passed as a raw buffer and refilled in place', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const raw = encode(dmasim_test_info, { argsz: 24, index: 0 });
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, raw)).toBe(0);
      expect(decode(dmasim_test_info, raw).value).toBe(0xd5000000);
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.GET_INFO, new Uint8Array(8)));
    });
  });

  it('char * arguments (strndup_user), Mapping arguments, frozen objects', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const name = new TextEncoder().encode('0000:00:03.0\0');
      expect(await sys.ioctl(fd, DMASIM_TEST.STRLEN, name)).toBe(12);
      expect(await sys.ioctl(fd, DMASIM_TEST.STRLEN, 'héllo' as unknown as object)).toBe(6);
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.STRLEN, new Uint8Array(PAGE).fill(0x41)));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.STRLEN, new Uint8Array(8).fill(0x41)));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.STRLEN, 0n));
      const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
      sys.mem.writeBytes(m.addr + BigInt(PAGE - 3), new TextEncoder().encode('abcdef\0'));
      expect(await sys.ioctl(fd, DMASIM_TEST.STRLEN, m.addr + BigInt(PAGE - 3))).toBe(6);
      sys.mem.writeBytes(m.addr, encode(dmasim_test_info, { argsz: 24, index: 0 }));
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, m)).toBe(0);
      expect(decode(dmasim_test_info, sys.mem.readBytes(m.addr, 24)).value).toBe(0xd5000000);
      const frozen = Object.freeze({ argsz: 24, index: 1 });
      expect(await sys.ioctl(fd, DMASIM_TEST.GET_INFO, frozen)).toBe(0);
      expect(frozen.argsz).toBe(24);
    });
  });

  it('size struct: zero-extension, E2BIG for a nonzero tail, EINVAL below min, EOPNOTSUPP for flags/reserved', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const full = { size: 32, flags: 0, in_value: 7, __reserved: 0, out_value: 0n, out_extra: 0n };
      expect(await sys.ioctl(fd, DMASIM_TEST.SIZED, full)).toBe(0);
      expect(full.out_value).toBe((7n << 32n) | 7n);
      expect(full.out_extra).toBe(DMASIM_TEST_EXTRA);
      const old = { size: 24, in_value: 1, out_extra: 5n, flags: DMASIM_TEST_SIZED_FLAG.INVERT };
      expect(await sys.ioctl(fd, DMASIM_TEST.SIZED, old)).toBe(0);
      expect(old).toMatchObject({ out_value: ~((1n << 32n) | 1n) & (2n ** 64n - 1n), out_extra: 5n });
      const bigger = { size: 64, in_value: 2 };
      expect(await sys.ioctl(fd, DMASIM_TEST.SIZED, bigger)).toBe(0);
      expect(bigger).toMatchObject({ out_value: (2n << 32n) | 2n, out_extra: DMASIM_TEST_EXTRA });
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 23 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 0 }));
      await expectErrno('EOPNOTSUPP', sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 32, flags: 4 }));
      // A failing call's write-back still reaches the object (IOAS_IOVA_RANGES with EMSGSIZE).
      const failing = { size: 32, flags: DMASIM_TEST_SIZED_FLAG.EMSGSIZE, in_value: 1, out_value: 0n };
      await expectErrno('EMSGSIZE', sys.ioctl(fd, DMASIM_TEST.SIZED, failing));
      expect(failing.out_value).toBe((1n << 32n) | 1n);
      await expectErrno('EOPNOTSUPP', sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 32, __reserved: 1 }));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.SIZED, 0n));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 0xffffffff }));
      const m = await sys.mmap(null, PAGE, RW, ANON);
      const b = encode(dmasim_test_sized, { size: 40, in_value: 3 }, 40);
      b[37] = 1;
      sys.mem.writeBytes(m.addr, b);
      await expectErrno('E2BIG', sys.ioctl(fd, DMASIM_TEST.SIZED, m.addr));
      b[37] = 0;
      sys.mem.writeBytes(m.addr, b);
      expect(await sys.ioctl(fd, DMASIM_TEST.SIZED, m.addr)).toBe(0);
      // A tail running off the mapping is EFAULT, even when the part that exists is zero.
      const end = m.addr + BigInt(PAGE) - 32n;
      sys.mem.writeBytes(end, encode(dmasim_test_sized, { size: 64 }));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.SIZED, end));
    });
  });

  it('flexible u32 array: written back into the caller\'s typed array; count checked against argsz', async () => {
    await run(async (sys) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const data = new Uint32Array([1, 2, 0xffffffff]);
      const x = { argsz: 28, flags: 0, count: 3, sum: 0, data };
      expect(await sys.ioctl(fd, DMASIM_TEST.XFORM, x)).toBe(0);
      expect(x.data).toBe(data);
      expect([...data]).toEqual([2, 4, 0xfffffffe]);
      expect(x.sum).toBe(2);
      // A typed array of another kind is raw memory: an Int32Array comes back through the same bytes.
      const signed = new Int32Array([-1, 5]);
      expect(await sys.ioctl(fd, DMASIM_TEST.XFORM, { argsz: 24, count: 2, data: signed })).toBe(0);
      expect([...signed]).toEqual([-2, 10]);
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.XFORM, { argsz: 24, count: 3, data: new Uint32Array(2) }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.XFORM, { argsz: 16 + 4 * 2000, count: 2000 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.XFORM, { argsz: 12 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.XFORM, { argsz: 16, flags: 1 }));
    });
  });

  it('unknown requests with object arguments are ENOTTY, and scratch memory never leaks', async () => {
    await run(async (sys, kernel) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const mm = (kernel.task(sys.pid) ?? { mm: undefined }).mm;
      const before = mm?.vmas.length;
      await expectErrno('ENOTTY', sys.ioctl(fd, _IO(0xd5, 99), { argsz: 8 }));
      await expectErrno('ENOTTY', sys.ioctl(fd, vfio.VFIO.DEVICE_GET_INFO, { argsz: 24 }));
      const ev = await sys.eventfd(0, 0);
      await expectErrno('ENOTTY', sys.ioctl(ev, DMASIM_TEST.GET_INFO, { argsz: 24 }));
      for (let i = 0; i < 20; i++) {
        await sys.ioctl(fd, DMASIM_TEST.GET_INFO, { argsz: 24 + (i % 3) * 16, index: i % 3 });
        await sys.ioctl(fd, DMASIM_TEST.SIZED, { size: 16 + i }).catch(() => 0);
      }
      expect(mm?.vmas.length).toBe(before);
    });
  });
});

describe('blocking ioctls with object arguments', () => {
  it('another thread maps around the scratch while a call sleeps; everything is unmapped after', async () => {
    await run(async (sys, kernel) => {
      const mm = kernel.task(sys.pid)?.mm;
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const before = mm?.vmas.length ?? -1;
      let during = -1;
      const t = sys.thread(async (s2) => {
        await s2.nanosleep(100);
        during = mm?.vmas.length ?? -1;
        const m = await s2.mmap(null, PAGE, RW, ANON);
        await s2.munmap(m.addr, PAGE);
      });
      const arg = { argsz: 16, flags: 0, ns: 10_000n };
      const t0 = await sys.clock_gettime();
      expect(await sys.ioctl(fd, DMASIM_TEST.SLEEP, arg)).toBe(0);
      expect(await sys.clock_gettime() - t0).toBeGreaterThanOrEqual(10_000);
      expect(arg.ns).toBe(0n);
      await t.done;
      expect(during).toBe(before + 2); // the scratch pages and their guard
      expect(mm?.vmas.length).toBe(before);
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.SLEEP, { argsz: 16, ns: 2n * 10n ** 9n }));
      expect(dmasim_test_sleep.size).toBe(16);
    });
  });

  it('a kill during the call frees the scratch, the pins and the fds', async () => {
    const machine = createMachine({ memory: { size: 64 << 20 } });
    const kernel = bootKernel(machine, { testDevice: true });
    let mmRef: { vmas: unknown[]; lockedVm: number } | undefined;
    const victim = kernel.spawn({ comm: 'victim' }, async (sys) => {
      mmRef = kernel.task(sys.pid)?.mm;
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const m = await sys.mmap(null, 2 * PAGE, RW, ANON);
      await sys.ioctl(fd, DMASIM_TEST.PIN, { argsz: 24, flags: 1, vaddr: m.addr, length: BigInt(2 * PAGE) });
      await sys.ioctl(fd, DMASIM_TEST.SLEEP, { argsz: 16, ns: 10n ** 8n });
      return 0;
    });
    kernel.spawn({ comm: 'killer' }, async (sys) => {
      await sys.nanosleep(50_000);
      expect(kernel.userPages.pinned).toBe(2);
      await sys.kill(victim.pid, 9);
    });
    await machine.sim.run();
    expect(await victim.exited).toBe(137);
    expect(kernel.userPages.pinned).toBe(0);
    expect(mmRef?.vmas.length).toBe(0);
    expect(mmRef?.lockedVm).toBe(0);
  });
});

describe('/dev/dmasim-test pinning', () => {
  const pinArg = (vaddr: bigint, length: number | bigint, flags: number = DMASIM_TEST_PIN_FLAG.WRITE): Record<string, unknown> =>
    ({ argsz: 24, flags, vaddr, length: BigInt(length) });

  it('pins and unpins with RLIMIT_MEMLOCK accounting; errors in type1 order', async () => {
    const { kernel } = await run(async (sys, kernel) => {
      const mm = kernel.task(sys.pid)?.mm;
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const m = await sys.mmap(null, 8 * PAGE, RW, ANON);
      expect(await sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 4 * PAGE))).toBe(0);
      expect(mm?.lockedVm).toBe(4);
      expect(kernel.userPages.pinned).toBe(4);
      await expectErrno('EEXIST', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr + BigInt(3 * PAGE), 2 * PAGE)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, { ...pinArg(m.addr, PAGE), argsz: 23 }));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, PAGE, 4)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 0)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr + 1n, PAGE)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 100)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(2n ** 64n - BigInt(PAGE), 2 * PAGE)));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(2n ** 63n, PAGE)));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr + BigInt(6 * PAGE), 4 * PAGE)));
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.PIN, 0n));
      const ro = await sys.mmap(null, PAGE, PROT.READ, ANON);
      await expectErrno('EFAULT', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(ro.addr, PAGE)));
      expect(await sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(ro.addr, PAGE, 0))).toBe(0);
      expect(mm?.lockedVm).toBe(5);
      expect(kernel.userPages.pinned).toBe(5);
      await expectErrno('ENOENT', sys.ioctl(fd, DMASIM_TEST.UNPIN, pinArg(m.addr, PAGE, 0)));
      await expectErrno('EINVAL', sys.ioctl(fd, DMASIM_TEST.UNPIN, pinArg(m.addr, PAGE, DMASIM_TEST_PIN_FLAG.ALL)));
      const u = pinArg(m.addr, 4 * PAGE, 0);
      expect(await sys.ioctl(fd, DMASIM_TEST.UNPIN, u)).toBe(0);
      expect(u.length).toBe(BigInt(4 * PAGE));
      expect(mm?.lockedVm).toBe(1);
      // Pins outlive the mapping; close releases them.
      await sys.munmap(ro.addr, PAGE);
      expect(kernel.userPages.pinned).toBe(1);
      await sys.close(fd);
      expect(mm?.lockedVm).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    });
    expect(kernel.userPages.pinned).toBe(0);
  });

  it('ENOMEM past RLIMIT_MEMLOCK without CAP_IPC_LOCK, nothing left pinned; CAP_IPC_LOCK passes', async () => {
    await run(async (sys, kernel) => {
      const mm = kernel.task(sys.pid)?.mm;
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const m = await sys.mmap(null, 16 * PAGE, RW, ANON);
      expect(await sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 8 * PAGE))).toBe(0);
      await expectErrno('ENOMEM', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr + BigInt(8 * PAGE), PAGE)));
      expect(mm?.lockedVm).toBe(8);
      expect(kernel.userPages.pinned).toBe(8);
      const all = pinArg(0n, 0, DMASIM_TEST_PIN_FLAG.ALL);
      expect(await sys.ioctl(fd, DMASIM_TEST.UNPIN, all)).toBe(0);
      expect(all.length).toBe(BigInt(8 * PAGE));
      await expectErrno('ENOMEM', sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 16 * PAGE)));
      expect(mm?.lockedVm).toBe(0);
      expect(kernel.userPages.pinned).toBe(0);
    }, { uid: 1000, rlimits: { memlock: 8 * PAGE } });
    await run(async (sys, kernel) => {
      const fd = await sys.open('/dev/dmasim-test', O.RDWR);
      const m = await sys.mmap(null, 16 * PAGE, RW, ANON);
      expect(await sys.ioctl(fd, DMASIM_TEST.PIN, pinArg(m.addr, 16 * PAGE))).toBe(0);
      expect(kernel.task(sys.pid)?.mm.lockedVm).toBe(16);
    }, { uid: 1000, caps: ['IPC_LOCK'], rlimits: { memlock: 8 * PAGE } });
  });

  it('exit releases every pin of every open file', async () => {
    let mmRef: { lockedVm: number } | undefined;
    const { kernel } = await run(async (sys, kernel) => {
      mmRef = kernel.task(sys.pid)?.mm;
      const a = await sys.open('/dev/dmasim-test', O.RDWR);
      const b = await sys.open('/dev/dmasim-test', O.RDWR);
      const m = await sys.mmap(null, 4 * PAGE, RW, ANON);
      expect(await sys.ioctl(a, DMASIM_TEST.PIN, pinArg(m.addr, 2 * PAGE))).toBe(0);
      expect(await sys.ioctl(b, DMASIM_TEST.PIN, pinArg(m.addr, 4 * PAGE))).toBe(0);
      expect(kernel.userPages.pinned).toBe(6);
      await sys.exit(0);
    });
    expect(kernel.userPages.pinned).toBe(0);
    expect(mmRef?.lockedVm).toBe(0);
  });
});

/** Every layout the uAPI tables export. */
function allLayouts(): AnyLayout[] {
  return [
    ...Object.values(vfio), ...Object.values(iommufd), ...Object.values(dmabuf), uio_dmabuf_args,
    dmasim_test_info, dmasim_test_cap, dmasim_test_sized, dmasim_test_pin,
  ].filter((l): l is AnyLayout => typeof l === 'object' && l !== null && 'byName' in l);
}

/** Which bytes of `l`'s fixed part some field covers (padding is not). */
function coverage(l: AnyLayout): Uint8Array {
  const m = new Uint8Array(l.size);
  for (const f of l.fields) m.fill(1, f.offset, f.offset + f.size);
  return m;
}

describe('codec on arbitrary input', () => {
  it('property: encode(decode(bytes)) gives back every byte a field covers (fixed seed)', () => {
    for (const l of allLayouts()) {
      const cov = coverage(l);
      fc.assert(fc.property(fc.uint8Array({ minLength: l.size, maxLength: l.size + 24 }), (bytes) => {
        const v = decode(l, bytes);
        const again = encode(l, v as Record<string, unknown>, bytes.length);
        for (let i = 0; i < l.size; i++) expect(again[i]).toBe(cov[i] === 1 ? bytes[i] : 0);
        if (l.flex !== undefined) {
          const tailEnd = l.flex.offset + Math.floor((bytes.length - l.flex.offset) / l.flex.elemSize) * l.flex.elemSize;
          expect(again.subarray(l.flex.offset, tailEnd)).toEqual(bytes.subarray(l.flex.offset, tailEnd));
        }
      }), { seed: 0x5eed, numRuns: 20 });
    }
  });

  it('property: encoding any junk object never throws', () => {
    const layouts = allLayouts();
    fc.assert(fc.property(fc.integer({ min: 0, max: layouts.length - 1 }), fc.dictionary(fc.string(), fc.anything()), (i, junk) => {
      const l = layouts[i] as AnyLayout;
      const names = [...l.byName.keys(), ...(l.flex === undefined ? [] : [l.flex.name])];
      const obj: Record<string, unknown> = { ...junk };
      for (const [k, n] of names.entries()) obj[n] = Object.values(junk)[k];
      const b = encode(l, obj);
      decode(l, b, obj);
    }), { seed: 0xbad, numRuns: 200 });
  });
});

describe('capability chains', () => {
  it('builds 8-byte-aligned chains with next from the buffer start, and walks them back', () => {
    const base = vfio.vfio_iommu_type1_info.size;
    const chain = buildCapChain(base, [
      { layout: vfio.vfio_iommu_type1_info_dma_avail, value: { header: { id: 3, version: 1 }, avail: 65535 } },
      { layout: vfio.vfio_iommu_type1_info_cap_iova_range, value: { header: { id: 1, version: 1 }, nr_iovas: 1, iova_ranges: [{ start: 0n, end: 0xfedfffffn }] } },
    ]);
    expect(chain.length).toBe(16 + 32);
    const buf = new Uint8Array(base + chain.length);
    buf.set(chain, base);
    expect(walkCapChain(buf, base)).toEqual([{ id: 3, version: 1, offset: 24 }, { id: 1, version: 1, offset: 40 }]);
    const caps = infoCaps(vfio.vfio_iommu_type1_info, { cap_offset: base, caps: chain }, {
      1: vfio.vfio_iommu_type1_info_cap_iova_range, 3: vfio.vfio_iommu_type1_info_dma_avail,
    });
    expect(caps[0]?.value).toMatchObject({ avail: 65535 });
    expect(caps[1]?.value).toMatchObject({ nr_iovas: 1, iova_ranges: [{ start: 0n, end: 0xfedfffffn }] });
    // A loop ends the walk.
    const loop = new Uint8Array(16);
    new DataView(loop.buffer).setUint32(4, 8, true);
    expect(walkCapChain(loop, 8).length).toBe(1);
    expect(infoCaps(vfio.vfio_region_info, { cap_offset: 0 })).toEqual([]);
  });
});

describe('random ioctls on /dev/dmasim-test', () => {
  it('property: any sequence throws only SysError and leaves nothing pinned or mapped (fixed seed)', async () => {
    const reqs = [...Object.values(DMASIM_TEST), _IO(0xd5, 77), vfio.VFIO.DEVICE_GET_INFO];
    const arbArg = fc.oneof(
      fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
      fc.integer({ min: -5, max: 1 << 20 }),
      fc.record({
        argsz: fc.integer({ min: 0, max: 80 }), size: fc.integer({ min: 0, max: 80 }), flags: fc.integer({ min: 0, max: 7 }),
        index: fc.integer({ min: 0, max: 6 }), count: fc.integer({ min: 0, max: 6 }),
        vaddr: fc.constantFrom(0n, 1n << 46n, 0x7f00_0000_0000n - 0x10000n), length: fc.constantFrom(0n, 4096n, 8192n, 1n << 40n),
        data: fc.uint32Array({ maxLength: 6 }),
      }, { requiredKeys: [] }),
    );
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...reqs), arbArg), { maxLength: 25 }), async (calls) => {
      let vmas = -1;
      const { kernel } = await run(async (sys, kernel) => {
        const fd = await sys.open('/dev/dmasim-test', O.RDWR);
        await sys.mmap(0x7f00_0000_0000 - 0x10000, 0x10000, RW, ANON | MAP.FIXED);
        const mm = kernel.task(sys.pid)?.mm;
        vmas = mm?.vmas.length ?? -1;
        for (const [req, arg] of calls) {
          try {
            await sys.ioctl(fd, req, arg);
          } catch (e) {
            expect(e).toBeInstanceOf(SysError);
          }
        }
        expect(mm?.vmas.length).toBe(vmas);
      }, { uid: 1000, rlimits: { memlock: 8 * PAGE } });
      expect(kernel.userPages.pinned).toBe(0);
    }), { seed: 0xd5, numRuns: 25 });
  });
});
