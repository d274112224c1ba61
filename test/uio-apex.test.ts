import { describe, expect, it } from 'vitest';
import { APEX_IRQ_COUNT, APEX_MSIX_PBA, ApexIrq } from '../device-models/index.ts';
import { O } from '../kernel-shim/uapi/linux.ts';
import { errnoOf } from './sys-errno.ts';
import { BDF, cat, count, off, onApex, openAll, readable, s32 } from './uio-apex-host.ts';

describe('uio_apex: one UIO device per interrupt source', () => {
  it('registers /dev/uio0..12 in source order with BAR2 as map0 and programs INTVECCTL entry = source', async () => {
    await onApex(async ({ sys, machine }) => {
      const names = [];
      for (let i = 0; i < APEX_IRQ_COUNT; i++) names.push(await cat(sys, `/sys/class/uio/uio${i}/name`));
      expect(names).toEqual([
        'apex_instr_queue', 'apex_input_actv_queue', 'apex_param_queue', 'apex_output_actv_queue',
        'apex_sc_host_0', 'apex_sc_host_1', 'apex_sc_host_2', 'apex_sc_host_3',
        'apex_top_level_0', 'apex_top_level_1', 'apex_top_level_2', 'apex_top_level_3', 'apex_fatal_err',
      ]);
      const bar2 = machine.pci.bars.find((b) => b.bar === 2);
      expect(await cat(sys, '/sys/class/uio/uio7/maps/map0/addr')).toBe(`0x${(bar2?.base ?? 0).toString(16).padStart(16, '0')}`);
      expect(await cat(sys, '/sys/class/uio/uio7/maps/map0/size')).toBe('0x0000000000100000');
      expect(await sys.readdir('/sys/class/uio/uio7/maps')).toEqual(['map0']);
      expect(await sys.readdir('/sys/class/uio/uio0/maps')).toEqual(['map0', 'map1', 'map2']);
      const apex = machine.pci.apex(BDF);
      for (let i = 0; i < APEX_IRQ_COUNT; i++) expect(apex.irq.vectorOf(i)).toBe(i);
      expect(apex.fn.mmioRead64(2, off('SC_HOST_INTVECCTL'))).toBe(BigInt(4 | (5 << 7) | (6 << 14) | (7 << 21)));
      expect(apex.fn.mmioRead64(2, off('TOP_LEVEL_INTVECCTL'))).toBe(BigInt(8 | (9 << 7) | (10 << 14) | (11 << 21)));
      return 0;
    });
  });

  it('source i increments only /dev/uio<i>\'s event count and wakes only its reader', async () => {
    await onApex(async ({ sys, machine }) => {
      const { fds, bar } = await openAll(sys);
      const woken: number[] = [];
      const threads = fds.map((fd, i) => sys.thread(async (t) => {
        const b = new Uint8Array(4);
        await t.read(fd, b);
        woken.push(i);
        expect(count(b)).toBe(1);
      }));
      await sys.nanosleep(1000);
      const order = [12, 4, 0, 9, 7, 1, 11, 2, 5, 8, 3, 10, 6];
      for (const [k, src] of order.entries()) {
        machine.pci.apex(BDF).irq.raise(src);
        await sys.nanosleep(1000);
        expect(woken).toEqual(order.slice(0, k + 1));
        for (let i = 0; i < APEX_IRQ_COUNT; i++) expect(await cat(sys, `/sys/class/uio/uio${i}/event`)).toBe(order.slice(0, k + 1).includes(i) ? '1' : '0');
      }
      await Promise.all(threads.map((t) => t.done));
      expect(await readable(sys, fds)).toEqual([]);
      bar.write64(off('SC_HOST_INT_STATUS'), 0n);
      return 0;
    });
  });

  it('irqcontrol(0) masks only that vector (PBA pending, no event); irqcontrol(1) delivers it; both idempotent', async () => {
    await onApex(async ({ sys, machine }) => {
      const { fds, bar } = await openAll(sys);
      const apex = machine.pci.apex(BDF);
      const fd4 = fds[ApexIrq.SC_HOST_0] as number;
      expect(await sys.write(fd4, s32(0))).toBe(4);
      expect(await sys.write(fd4, s32(0))).toBe(4);
      apex.irq.raise(ApexIrq.SC_HOST_0);
      apex.irq.raise(ApexIrq.SC_HOST_1);
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.SC_HOST_1]);
      expect(bar.read32(APEX_MSIX_PBA)).toBe(1 << ApexIrq.SC_HOST_0);
      expect(await sys.write(fd4, s32(1))).toBe(4);
      await sys.nanosleep(1000);
      expect(bar.read32(APEX_MSIX_PBA)).toBe(0);
      expect(await readable(sys, fds)).toEqual([ApexIrq.SC_HOST_0, ApexIrq.SC_HOST_1]);
      expect(await sys.write(fd4, s32(1))).toBe(4);
      const b = new Uint8Array(4);
      await sys.read(fd4, b);
      expect(count(b)).toBe(1);
      // A second unmask delivers nothing more; the next raise arrives as usual.
      expect(await readable(sys, [fd4])).toEqual([]);
      apex.irq.raise(ApexIrq.SC_HOST_0);
      await sys.read(fd4, b);
      expect(count(b)).toBe(2);
      return 0;
    });
  });

  it('register-caused interrupts: a bad queue size raises FATAL_ERR on /dev/uio12 only, a thermal warning TOP_LEVEL_3 on /dev/uio11 only', async () => {
    await onApex(async ({ sys }) => {
      const { fds, bar } = await openAll(sys);
      bar.write64(off('IQ_SIZE'), 3n);
      bar.write64(off('IQ_CONTROL'), 1n);
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.FATAL_ERR]);
      const b = new Uint8Array(4);
      await sys.read(fds[ApexIrq.FATAL_ERR] as number, b);
      expect(bar.read64(off('FATAL_ERR_INT_STATUS'))).toBe(1n);
      bar.write64(off('FATAL_ERR_INT_STATUS'), 0n);
      // Warning 1 at 40 °C (ADC 504; the reading is 484) while the sensor reads 45.05 °C: raised when enabled.
      bar.write32(off('OMC0_D4'), ((1 << 31) | (504 << 16)) >>> 0);
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.TOP_LEVEL_3]);
      expect(bar.read64(off('TOP_LEVEL_INT_STATUS'))).toBe(1n << 3n);
      return 0;
    });
  });

  it('write of anything but 0 or 1 is EINVAL, of other than 4 bytes EINVAL (the core)', async () => {
    await onApex(async ({ sys }) => {
      const fd = await sys.open('/dev/uio12', O.RDWR);
      for (const v of [2, -1, 0x100, 0x7fff_ffff]) expect(await errnoOf(sys.write(fd, s32(v)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, new Uint8Array(3)))).toBe('EINVAL');
      expect(await errnoOf(sys.write(fd, new Uint8Array(8)))).toBe('EINVAL');
      return 0;
    });
  });

  it('irqcontrol(1) re-arms an entry and its INTVECCTL field after a device reset cleared them', async () => {
    await onApex(async ({ sys, machine }) => {
      const apex = machine.pci.apex(BDF);
      const { fds, bar } = await openAll(sys);
      // Into reset and out again through the SCU: the MSI-X table and INTVECCTLs are cleared.
      bar.write32(off('SCU_2'), 1 << 2);
      await sys.nanosleep(20_000);
      bar.write32(off('SCU_2'), 2 << 2);
      await sys.nanosleep(50_000);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_2)).toBe(0);
      expect(await sys.write(fds[ApexIrq.TOP_LEVEL_2] as number, s32(1))).toBe(4);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_2)).toBe(ApexIrq.TOP_LEVEL_2);
      expect(apex.irq.vectorOf(ApexIrq.TOP_LEVEL_1)).toBe(0);
      bar.write64(off('TOP_LEVEL_INT_CONTROL'), 0xfn);
      apex.injectMbistFailure();
      await sys.nanosleep(1000);
      expect(await readable(sys, fds)).toEqual([ApexIrq.TOP_LEVEL_2]);
      return 0;
    });
  });
});
