import { PAGE_SIZE, type Mapping, type Sys } from '../kernel-shim/index.ts';
import { APEX_COMMAND_SIZE, APEX_IRQ_COUNT, APEX_PAGE_TABLE, ApexIrq, ApexOp } from '../device-models/index.ts';
import { VfioPciDevice, type DmaBuffer, type VfioOpenOptions } from '../userspace/index.ts';
import { MATMUL, apexReset, hex, matmulRef, off, programIntvecctl, startQueue0, type ApexBar } from './apex-common.ts';

/**
 * A user-space Apex driver over VFIO, the way a runtime that owns the whole device drives it: BAR2 mapped
 * through the device fd, the SCU reset sequence, all 13 interrupt sources on their own MSI-X vector and
 * eventfd, buffers pinned and mapped with MAP_DMA, their IOVAs written into the gasket page table by the
 * driver itself, queue 0's ring, status block and command buffers in one DMA buffer, jobs completed by
 * SC_HOST_0. Shared by the `vfio-apex` scenario and the `e2e.apex.jobs` benchmark.
 */

/** Simple slots the partition leaves (EXTENDED_TABLE); the rest are extended level-0 entries. */
const SIMPLE_SLOTS = 6144;
/** Descriptors in queue 0's ring (one page of 16-byte descriptors). */
export const RING = 256;
/** Command buffers, one page each (depth up to this many jobs per doorbell). */
export const CMD_PAGES = 32;
/** Gasket slots of the queue buffer: ring, status block, then the command pages. Device address = slot << 12. */
export const QSLOT = { ring: 0, status: 1, cmd: 2 } as const;
/** The first slot the driver hands out for data buffers. */
export const DATA_SLOT0 = 64;

/** The device address of gasket simple slot `slot`. */
export const devAddr = (slot: number): bigint => BigInt(slot) << 12n;

/** What a finished wait saw: the job completed (SC_HOST_0) or the device raised FATAL_ERR. */
export type JobEnd = { readonly kind: 'done'; readonly completedHead: number; readonly fatal: number } | { readonly kind: 'fatal'; readonly hibError: bigint; readonly firstError: bigint; readonly faultAddress: bigint };

/** The driver. Create with {@link ApexVfio.open}; {@link close} releases the device, buffers and interrupts. */
export class ApexVfio implements ApexBar {
  readonly dev: VfioPciDevice;
  readonly regs: Mapping;
  /** Queue 0's buffer: ring page, status page, {@link CMD_PAGES} command pages. */
  readonly queue: DmaBuffer;
  readonly #sys: Sys;
  readonly #say: (t: string) => void;
  /** Eventfd of each source's vector (index = source = MSI-X entry). */
  #efds: number[] = [];
  /** The simple slots mapped, slot -> IOVA, re-written after every reset. */
  readonly #slots = new Map<number, bigint>();
  #nextSlot = DATA_SLOT0;
  /** Queue 0's tail (next descriptor). */
  tail = 0;
  /** Interrupts received on the eventfds. */
  interrupts = 0;
  readonly #iqTail = off('IQ_TAIL');
  readonly #scStatus = off('SC_HOST_INT_STATUS');
  /** Device address of each command page. */
  readonly #cmdAddr: readonly bigint[] = Array.from({ length: CMD_PAGES }, (_, k) => devAddr(QSLOT.cmd + k));

  private constructor(sys: Sys, dev: VfioPciDevice, regs: Mapping, queue: DmaBuffer, say: (t: string) => void) {
    this.#sys = sys;
    this.dev = dev;
    this.regs = regs;
    this.queue = queue;
    this.#say = say;
  }

  /** Opens the Apex at `bdf` through VFIO, maps BAR2 and allocates the queue buffer. */
  static async open(sys: Sys, bdf: string, say: (t: string) => void = () => undefined, opts: VfioOpenOptions = {}): Promise<ApexVfio> {
    const dev = await VfioPciDevice.open(sys, bdf, opts);
    try {
      await dev.enableBusMaster();
      const bar2 = await dev.region(2);
      const regs = await dev.mapRegion(2);
      const reset = dev.canReset ? `VFIO_DEVICE_RESET by ${(await dev.resetMethods()).join(', ')} reset (the kernel did one at open)` : 'no VFIO reset';
      const via = dev.iommufd >= 0 ? `cdev fd ${dev.fd} bound to /dev/iommu (IOAS ${dev.ioasId}, HWPT ${dev.hwptId})` : `group ${dev.groupId}, device fd ${dev.fd}`;
      say(`${dev.bdf}: ${via}, ${dev.info.numRegions} regions, ${dev.info.numIrqs} irq indexes, ${reset}; BAR2 ${Number(bar2.size) >>> 20} MiB mmapped at ${hex(regs.addr)}`);
      if (dev.noiommu) say('container: VFIO_NOIOMMU_IOMMU, no IOVA space: the device will be given physical addresses from /proc/self/pagemap');
      else say(`${dev.iommufd >= 0 ? 'IOAS' : 'container'} IOVA ranges: ${dev.iovaRanges.map((r) => `${hex(r.start)}-${hex(r.end)}`).join(', ')}`);
      // Every page of the queue buffer has its own gasket slot, so it need not be physically contiguous.
      const queue = await dev.allocDma((2 + CMD_PAGES) * PAGE_SIZE, { pageByPage: true });
      return new ApexVfio(sys, dev, regs, queue, say);
    } catch (e) {
      await dev.close();
      throw e;
    }
  }

  r32(o: number): number {
    return this.regs.read32(o);
  }
  w32(o: number, v: number): void {
    this.regs.write32(o, v);
  }
  r64(o: number): bigint {
    return this.regs.read64(o);
  }
  w64(o: number, v: bigint | number): void {
    this.regs.write64(o, BigInt(v));
  }
  delay(ns: number): Promise<void> {
    return this.#sys.nanosleep(ns);
  }

  /** The eventfd of source `src`'s vector. */
  efd(src: number): number {
    return this.#efds[src] as number;
  }

  /** apex_reset through the SCU (the device has no FLR, so VFIO offers no reset). */
  reset(): Promise<void> {
    return apexReset(this, this.#say);
  }

  /**
   * One eventfd per source: SET_IRQS routes MSI-X entries 0-12 to fresh eventfds (the kernel writes the
   * table, which the SCU reset clears), then each source's INTVECCTL names its entry.
   */
  async armInterrupts(): Promise<void> {
    this.#efds = await this.dev.enableMsix(APEX_IRQ_COUNT);
    programIntvecctl(this);
  }

  /** Points gasket slot `slot` at `iova` (valid bit set) and remembers it for the next reset. */
  mapSlot(slot: number, iova: bigint): void {
    this.#slots.set(slot, iova);
    this.w64(APEX_PAGE_TABLE.offset + 8 * slot, iova | 1n);
  }

  /** Maps every page of `buf` (its bus address: IOVA, or physical address without an IOMMU) into consecutive fresh slots; returns the first slot. */
  mapBuffer(buf: DmaBuffer): number {
    const first = this.#nextSlot;
    for (let p = 0; p < buf.size / PAGE_SIZE; p++) this.mapSlot(first + p, buf.pages[p] as bigint);
    this.#nextSlot += buf.size / PAGE_SIZE;
    return first;
  }

  /** Partition, every remembered slot, queue 0 on the queue buffer, run controls and interrupt controls. */
  async startQueue(): Promise<void> {
    this.w64(off('EXTENDED_TABLE'), APEX_PAGE_TABLE.entries);
    this.w64(off('EXTENDED_TABLE'), SIMPLE_SLOTS);
    for (let p = 0; p < this.queue.size / PAGE_SIZE; p++) this.#slots.set(p, this.queue.pages[p] as bigint);
    for (const [s, iova] of this.#slots) this.w64(APEX_PAGE_TABLE.offset + 8 * s, iova | 1n);
    this.queue.map.bytes?.fill(0, 0, 2 * PAGE_SIZE);
    // Completion is SC_HOST_0; the queue's own interrupt is left off (the status block says the same).
    await startQueue0(this, devAddr(QSLOT.ring), devAddr(QSLOT.status), RING, false);
    this.tail = 0;
  }

  /**
   * Writes command page `page`'s command (op, len, a, b, c, three args) and the next descriptor; rings the
   * doorbell unless `ring` is false (batching).
   */
  submit(op: number, f: { len?: number; a?: bigint; b?: bigint; c?: bigint; args?: readonly number[] }, page = 0, ring = true): void {
    const q = this.queue.map;
    const cb = (QSLOT.cmd + page) * PAGE_SIZE;
    q.write32(cb, op);
    q.write32(cb + 4, f.len ?? 0);
    q.write64(cb + 8, f.a ?? 0n);
    q.write64(cb + 16, f.b ?? 0n);
    q.write64(cb + 24, f.c ?? 0n);
    for (let k = 0; k < 3; k++) q.write32(cb + 32 + 4 * k, f.args?.[k] ?? 0);
    this.submitDescriptor(page, ring);
  }

  /**
   * Writes the next descriptor, naming command page `page` as it stands (a command buffer reused as written),
   * and rings the doorbell unless `ring` is false.
   */
  submitDescriptor(page: number, ring = true): void {
    const q = this.queue.map;
    const d = QSLOT.ring * PAGE_SIZE + 16 * this.tail;
    q.write64(d, this.#cmdAddr[page] as bigint);
    q.write32(d + 8, APEX_COMMAND_SIZE);
    q.write32(d + 12, 0);
    this.tail = (this.tail + 1) % RING;
    if (ring) this.regs.write64(this.#iqTail, BigInt(this.tail));
  }

  /** IQ_TAIL = tail. */
  doorbell(): void {
    this.regs.write64(this.#iqTail, BigInt(this.tail));
  }

  /**
   * Waits for SC_HOST_0 (the job finished: acknowledged W0C, status block read) or FATAL_ERR (the device's
   * error registers read, the source acknowledged).
   */
  async waitJob(): Promise<JobEnd> {
    const sc0 = this.efd(ApexIrq.SC_HOST_0);
    const fatalFd = this.efd(ApexIrq.FATAL_ERR);
    const fired = await this.dev.waitAny([sc0, fatalFd]);
    this.interrupts += fired.length;
    if (fired.includes(fatalFd)) {
      this.w64(off('FATAL_ERR_INT_CONTROL'), 0);
      this.w64(off('FATAL_ERR_INT_STATUS'), 0);
      return { kind: 'fatal', hibError: this.r64(off('HIB_ERROR_STATUS')), firstError: this.r64(off('HIB_FIRST_ERROR_STATUS')), faultAddress: this.r64(off('PAGE_FAULT_ADDRESS')) };
    }
    this.regs.write64(this.#scStatus, 0xen);
    const q = this.queue.map;
    return { kind: 'done', completedHead: q.read32(QSLOT.status * PAGE_SIZE), fatal: q.read32(QSLOT.status * PAGE_SIZE + 4) };
  }

  /**
   * The fast path of a depth-1 job loop: wait on SC_HOST_0's eventfd alone, acknowledge it (W0C). Returns
   * the eventfd's count.
   */
  async waitDone(): Promise<bigint> {
    const n = await this.dev.waitIrq(this.#efds[ApexIrq.SC_HOST_0] as number);
    this.regs.write64(this.#scStatus, 0xen);
    this.interrupts++;
    return n;
  }

  /**
   * One checked matrix multiply: A and B from `rng` written into `bufs.a` and `bufs.b` (C cleared), the job
   * on gasket slots `slots`, its end awaited, C compared with {@link matmulRef}. `same` of `total` elements
   * matched (0 when the job did not complete).
   */
  async matmul(rng: { u32(): number }, bufs: { a: DmaBuffer; b: DmaBuffer; c: DmaBuffer }, slots: { a: number; b: number; c: number }): Promise<{ end: JobEnd; same: number; total: number }> {
    const { M, K, N } = MATMUL;
    const sys = this.#sys;
    const av = new Int8Array(M * K);
    const bv = new Int8Array(K * N);
    for (let i = 0; i < av.length; i++) av[i] = (rng.u32() & 0xff) - 128;
    for (let i = 0; i < bv.length; i++) bv[i] = (rng.u32() & 0xff) - 128;
    sys.mem.writeBytes(bufs.a.vaddr, new Uint8Array(av.buffer));
    sys.mem.writeBytes(bufs.b.vaddr, new Uint8Array(bv.buffer));
    sys.mem.writeBytes(bufs.c.vaddr, new Uint8Array(4 * M * N));
    this.submit(ApexOp.MATMUL_I8, { a: devAddr(slots.a), b: devAddr(slots.b), c: devAddr(slots.c), args: [M, K, N] });
    const end = await this.waitJob();
    if (end.kind !== 'done') return { end, same: 0, total: M * N };
    const got = new Int32Array(sys.mem.readBytes(bufs.c.vaddr, 4 * M * N).buffer);
    const want = matmulRef(av, bv);
    let same = 0;
    for (let i = 0; i < got.length; i++) if (got[i] === want[i]) same++;
    return { end, same, total: got.length };
  }

  /** Releases everything through the library (BAR mapping, eventfds, buffers, fds). */
  close(): Promise<void> {
    return this.dev.close();
  }
}
