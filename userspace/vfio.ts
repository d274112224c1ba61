import { MAP, O, POLL, PROT, SysError, type Mapping, type PollFd, type Sys } from '../kernel-shim/index.ts';
import {
  IOMMUFD, IOMMU_IOAS_MAP, VFIO, VFIO_API_VERSION, VFIO_DEVICE_FLAGS, VFIO_DMA_MAP_FLAG, VFIO_EXT, VFIO_GROUP_FLAGS, VFIO_IOMMU_TYPE1_INFO_CAP, VFIO_IRQ_SET,
  VFIO_PCI_REGION, infoCaps, vfio_iommu_type1_info, vfio_iommu_type1_info_cap_iova_range, vfio_iommu_type1_info_dma_avail,
} from '../kernel-shim/uapi/index.ts';
import { readText, writeText } from './files.ts';

/**
 * A user-space VFIO driver library, written only against the process API ({@link Sys}), in the shape of the
 * C helpers user-space drivers carry (DPDK's `rte_vfio`, SPDK's `vfio_user`, libvfn): open a PCI device by
 * its address, map a buffer and get its IOVA, one eventfd per MSI-X vector and a way to wait on them,
 * config-space access and BAR mappings. Every step is the ioctl or sysfs write a C driver makes, in the
 * same order; a failing step throws the kernel's {@link SysError} (its `code` is the errno name) or a
 * {@link VfioSetupError} naming the check that failed.
 */

const PAGE = 4096;
const PAGE_MASK = PAGE - 1;
const PROT_RW = PROT.READ | PROT.WRITE;

/** A precondition a C driver checks after an ioctl succeeded (API version, extension, viability). */
export class VfioSetupError extends Error {
  override name = 'VfioSetupError';
}

/** Options of {@link VfioPciDevice.open}. */
export interface VfioOpenOptions {
  /** Bind the device to vfio-pci first (through `driver_override` and `drivers_probe`). Default true. */
  readonly bind?: boolean;
  /** The IOMMU model to ask for: `'type1v2'` (default) or `'type1'`. */
  readonly iommu?: 'type1' | 'type1v2';
  /**
   * Open the device through its cdev `/dev/vfio/devices/vfio<X>` bound to an iommufd with one IOAS attached
   * (Linux 6.6+), instead of the group and the type1 container. Default false.
   */
  readonly iommufd?: boolean;
  /**
   * Use a no-IOMMU group (`/dev/vfio/noiommu-<N>`, `vfio.enable_unsafe_noiommu_mode=1` on a machine without
   * an IOMMU): the container gets `VFIO_NOIOMMU_IOMMU`, nothing is mapped, and the device's DMA carries
   * physical addresses that can reach all of memory. Needs `CAP_SYS_RAWIO` (and `CAP_SYS_ADMIN` to read
   * frame numbers from `/proc/self/pagemap`). Without this opt-in a no-IOMMU group is refused with a
   * {@link VfioSetupError}. Default false.
   */
  readonly noiommu?: boolean;
}

/** Options of {@link VfioPciDevice.allocDma}. */
export interface AllocDmaOptions {
  /** A fixed IOVA (IOMMU modes only). */
  readonly iova?: bigint;
  readonly read?: boolean;
  readonly write?: boolean;
  /**
   * No-IOMMU mode: accept a buffer whose frames are not physically contiguous; the caller then addresses
   * it page by page through {@link DmaBuffer.pages} (as a driver that fills a device page table does).
   * Without it a multi-page buffer on scattered frames is refused. Default false.
   */
  readonly pageByPage?: boolean;
}

/** One IOVA range the container accepts (`end` inclusive), from `VFIO_IOMMU_GET_INFO`. */
export interface IovaRange {
  readonly start: bigint;
  readonly end: bigint;
}

/** What {@link VfioPciDevice.region} reports for a region index. */
export interface RegionInfo {
  readonly index: number;
  readonly flags: number;
  readonly size: bigint;
  /** The file offset of the region on the device fd (`pread`/`pwrite`/`mmap`). */
  readonly offset: bigint;
}

/** A buffer mapped for the device: user memory and the IOVA it has in the container. */
export interface DmaBuffer {
  /** The process's mapping of the buffer. */
  readonly map: Mapping;
  /** Its user address. */
  readonly vaddr: bigint;
  /**
   * Its bus address for the device: the IOVA, or in no-IOMMU mode the physical address of its first page
   * (valid for the whole buffer only when {@link contiguous}).
   */
  readonly iova: bigint;
  /** Bytes (a multiple of the page size). */
  readonly size: number;
  /** The bus address of each page (`iova + i * 4096` behind an IOMMU; each frame's address without one). */
  readonly pages: readonly bigint[];
  /** Whether `pages` are consecutive, so `iova .. iova + size` addresses the whole buffer. */
  readonly contiguous: boolean;
}

/** The name of the driver bound to PCI device `bdf`, or undefined. */
async function boundDriver(sys: Sys, bdf: string): Promise<string | undefined> {
  try {
    return (await sys.readlink(`/sys/bus/pci/devices/${bdf}/driver`)).split('/').pop();
  } catch (e) {
    if (e instanceof SysError && e.code === 'ENOENT') return undefined;
    throw e;
  }
}

/** The full address `0000:bb:dd.f` of `bdf` (which may omit the domain). */
export function fullBdf(bdf: string): string {
  return /^[0-9a-f]{4}:/i.test(bdf) ? bdf.toLowerCase() : `0000:${bdf.toLowerCase()}`;
}

/**
 * Binds PCI device `bdf` to vfio-pci the way `driverctl` and `dpdk-devbind` do: `driver_override`, unbind
 * from the current driver, `drivers_probe`. Returns the device's IOMMU group number.
 */
export async function bindVfioPci(sys: Sys, bdf: string): Promise<number> {
  const dev = `/sys/bus/pci/devices/${fullBdf(bdf)}`;
  const current = await boundDriver(sys, fullBdf(bdf));
  if (current !== 'vfio-pci') {
    await writeText(sys, `${dev}/driver_override`, 'vfio-pci');
    if (current !== undefined) await writeText(sys, `${dev}/driver/unbind`, fullBdf(bdf));
    await writeText(sys, '/sys/bus/pci/drivers_probe', fullBdf(bdf));
  }
  return iommuGroup(sys, bdf);
}

/**
 * The physical address behind user address `vaddr` of this process, from `/proc/self/pagemap` (bit 63
 * present, bits 0-54 the frame number; Linux shows frame numbers only to `CAP_SYS_ADMIN`). A page not
 * present, or a zero frame number (no capability), is a {@link VfioSetupError}.
 */
export async function physAddr(sys: Sys, vaddr: bigint): Promise<bigint> {
  const fd = await sys.open('/proc/self/pagemap', O.RDONLY);
  try {
    const b = new Uint8Array(8);
    await sys.pread(fd, b, (vaddr / BigInt(PAGE)) * 8n, 8);
    const e = new DataView(b.buffer).getBigUint64(0, true);
    const pfn = e & ((1n << 55n) - 1n);
    if ((e >> 63n) === 0n) throw new VfioSetupError(`pagemap: ${hex(vaddr)} is not present`);
    if (pfn === 0n) throw new VfioSetupError('pagemap: no frame numbers (reading them needs CAP_SYS_ADMIN)');
    return pfn * BigInt(PAGE) + (vaddr & BigInt(PAGE_MASK));
  } finally {
    await sys.close(fd);
  }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** The IOMMU group number of `bdf`, from its `iommu_group` link. */
export async function iommuGroup(sys: Sys, bdf: string): Promise<number> {
  const link = await sys.readlink(`/sys/bus/pci/devices/${fullBdf(bdf)}/iommu_group`);
  return Number(link.split('/').pop());
}

const cstr = (s: string): Uint8Array => new TextEncoder().encode(`${s}\0`);

/**
 * A first-fit IOVA allocator over the container's ranges, page-granular, never handing out IOVA 0 (a
 * driver's zero usually means "not set").
 */
class IovaSpace {
  readonly #ranges: readonly IovaRange[];
  /** Allocated [start, end) pairs, sorted. */
  readonly #used: [bigint, bigint][] = [];

  constructor(ranges: readonly IovaRange[]) {
    this.#ranges = ranges;
  }

  alloc(size: number): bigint {
    const len = BigInt(size);
    for (const r of this.#ranges) {
      let at = r.start < BigInt(PAGE) ? BigInt(PAGE) : (r.start + BigInt(PAGE_MASK)) & ~BigInt(PAGE_MASK);
      for (const [s, e] of this.#used) {
        if (e <= at) continue;
        if (s >= at + len) break;
        at = e;
      }
      if (at + len - 1n <= r.end) {
        this.#insert(at, at + len);
        return at;
      }
    }
    throw new SysError('ENOSPC', 'iova alloc');
  }

  reserve(iova: bigint, size: number): void {
    this.#insert(iova, iova + BigInt(size));
  }

  free(iova: bigint): void {
    const i = this.#used.findIndex(([s]) => s === iova);
    if (i >= 0) this.#used.splice(i, 1);
  }

  #insert(s: bigint, e: bigint): void {
    let i = 0;
    while (i < this.#used.length && (this.#used[i] as [bigint, bigint])[0] < s) i++;
    this.#used.splice(i, 0, [s, e]);
  }
}

/**
 * A PCI device opened through VFIO: its container (type1 IOMMU), its group and the device fd. One object
 * per device; {@link close} releases everything it opened, mapped and pinned.
 *
 * @example
 * ```ts
 * const dev = await VfioPciDevice.open(sys, '0000:01:00.0');
 * const bar2 = await dev.mapRegion(2);
 * const buf = await dev.allocDma(4096);            // pinned, mapped at buf.iova
 * const [done] = await dev.enableMsix(1);          // eventfd of vector 0
 * bar2.write64(DOORBELL, buf.iova);
 * await dev.waitIrq(done);
 * await dev.close();
 * ```
 */
export class VfioPciDevice {
  /** The process the device belongs to. */
  readonly sys: Sys;
  /** Its `0000:bb:dd.f` address. */
  readonly bdf: string;
  /** Its IOMMU group number. */
  readonly groupId: number;
  /** The container fd (`/dev/vfio/vfio`); -1 on the iommufd path. */
  readonly container: number;
  /** The group fd (`/dev/vfio/<group>`); -1 on the iommufd path. */
  readonly group: number;
  /** The iommufd fd (`/dev/iommu`) on the iommufd path, else -1. */
  readonly iommufd: number;
  /** The IOAS the device is attached to (iommufd path), else 0. */
  readonly ioasId: number;
  /** The hardware page table ATTACH_IOMMUFD_PT wrote back (iommufd path), else 0. */
  readonly hwptId: number;
  /** The device fd. */
  readonly fd: number;
  /** `VFIO_DEVICE_GET_INFO`'s flags, region and IRQ counts. */
  readonly info: { readonly flags: number; readonly numRegions: number; readonly numIrqs: number };
  /** The IOVA ranges the container accepts (none in no-IOMMU mode: there is no IOVA space). */
  readonly iovaRanges: readonly IovaRange[];
  /** Opened in no-IOMMU mode ({@link VfioOpenOptions.noiommu}): bus addresses are physical addresses. */
  readonly noiommu: boolean;
  readonly #iovas: IovaSpace;
  readonly #regions = new Map<number, RegionInfo>();
  readonly #maps: Mapping[] = [];
  readonly #dma = new Map<bigint, DmaBuffer>();
  readonly #eventfds = new Map<number, number[]>();
  readonly #cnt = new Uint8Array(8);
  readonly #cntView = new DataView(this.#cnt.buffer);
  #closed = false;

  private constructor(sys: Sys, bdf: string, groupId: number, fds: { container: number; group: number; fd: number; iommufd?: number; ioasId?: number; hwptId?: number },
    info: VfioPciDevice['info'], ranges: readonly IovaRange[], noiommu = false) {
    this.sys = sys;
    this.noiommu = noiommu;
    this.bdf = bdf;
    this.groupId = groupId;
    this.container = fds.container;
    this.group = fds.group;
    this.fd = fds.fd;
    this.iommufd = fds.iommufd ?? -1;
    this.ioasId = fds.ioasId ?? 0;
    this.hwptId = fds.hwptId ?? 0;
    this.info = info;
    this.iovaRanges = ranges;
    this.#iovas = new IovaSpace(ranges);
  }

  /**
   * Opens `bdf` as the VFIO documentation's example does: bind to vfio-pci (unless `bind: false`), open
   * the container and check the API version and the type1 extension, open the group and check it is
   * viable, attach it to the container, set the IOMMU model, get the device fd by name, read the device's
   * info and the container's IOVA ranges. On any failure whatever was opened is closed again.
   *
   * A device in a no-IOMMU group (`/dev/vfio/noiommu-<N>`) is opened only with `noiommu: true`, with
   * `VFIO_NOIOMMU_IOMMU` and without IOVA ranges; asking for `noiommu` on a device with a real IOMMU group
   * is refused too (it would give up the protection the machine has).
   */
  static async open(sys: Sys, bdf: string, opts: VfioOpenOptions = {}): Promise<VfioPciDevice> {
    const name = fullBdf(bdf);
    if (opts.iommufd === true) return VfioPciDevice.#openCdev(sys, name, opts);
    const groupId = opts.bind === false ? await iommuGroup(sys, name) : await bindVfioPci(sys, name);
    const fake = (await sys.readdir('/dev/vfio')).includes(`noiommu-${groupId}`);
    if (fake && opts.noiommu !== true) {
      throw new VfioSetupError(`vfio: ${name} is in no-IOMMU group noiommu-${groupId}: nothing translates or isolates its DMA, which can read and overwrite any memory (the kernel is tainted); pass { noiommu: true } to accept that`);
    }
    if (!fake && opts.noiommu === true) throw new VfioSetupError(`vfio: ${name} is in IOMMU group ${groupId}, not a no-IOMMU group; open it without noiommu`);
    const opened: number[] = [];
    try {
      const container = await sys.open('/dev/vfio/vfio', O.RDWR);
      opened.push(container);
      if ((await sys.ioctl(container, VFIO.GET_API_VERSION)) !== VFIO_API_VERSION) throw new VfioSetupError('vfio: unknown API version');
      const type = fake ? VFIO_EXT.NOIOMMU_IOMMU : opts.iommu === 'type1' ? VFIO_EXT.TYPE1_IOMMU : VFIO_EXT.TYPE1v2_IOMMU;
      if ((await sys.ioctl(container, VFIO.CHECK_EXTENSION, type)) !== 1) {
        throw new VfioSetupError(fake ? 'vfio: no-IOMMU mode is off (boot with vfio.enable_unsafe_noiommu_mode=1)' : `vfio: IOMMU type ${type} not supported`);
      }
      const group = await sys.open(`/dev/vfio/${fake ? `noiommu-${groupId}` : groupId}`, O.RDWR);
      opened.push(group);
      const status = { argsz: 8, flags: 0 };
      await sys.ioctl(group, VFIO.GROUP_GET_STATUS, status);
      if ((status.flags & VFIO_GROUP_FLAGS.VIABLE) === 0) {
        throw new VfioSetupError(`vfio: group ${groupId} is not viable (bind every device in it to vfio-pci)`);
      }
      await sys.ioctl(group, VFIO.GROUP_SET_CONTAINER, Int32Array.of(container));
      await sys.ioctl(container, VFIO.SET_IOMMU, type);
      const fd = await sys.ioctl(group, VFIO.GROUP_GET_DEVICE_FD, cstr(name));
      opened.push(fd);
      const di = { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 };
      await sys.ioctl(fd, VFIO.DEVICE_GET_INFO, di);
      if ((di.flags & VFIO_DEVICE_FLAGS.PCI) === 0) throw new VfioSetupError(`vfio: ${name} is not a PCI device`);
      // No-IOMMU: GET_INFO is ENOTTY and there is no IOVA space to read.
      const ranges = fake ? [] : await readIovaRanges(sys, container);
      return new VfioPciDevice(sys, name, groupId, { container, group, fd }, { flags: di.flags, numRegions: di.num_regions, numIrqs: di.num_irqs }, ranges, fake);
    } catch (e) {
      for (const fd of opened.reverse()) await sys.close(fd).catch(() => undefined);
      throw e;
    }
  }

  /**
   * The iommufd path (vfio.rst's cdev example): bind to vfio-pci, open `/dev/vfio/devices/vfio<X>` (found
   * through `<device>/vfio-dev/`) and `/dev/iommu`, BIND_IOMMUFD, IOAS_ALLOC, ATTACH_IOMMUFD_PT, GET_INFO, and
   * the IOAS's IOVA ranges. A kernel without the cdev (before 6.6) gives a {@link VfioSetupError}.
   */
  static async #openCdev(sys: Sys, name: string, opts: VfioOpenOptions): Promise<VfioPciDevice> {
    const groupId = opts.bind === false ? await iommuGroup(sys, name) : await bindVfioPci(sys, name);
    let nodes: string[];
    try {
      nodes = await sys.readdir(`/sys/bus/pci/devices/${name}/vfio-dev`);
    } catch (e) {
      if (e instanceof SysError && e.code === 'ENOENT') throw new VfioSetupError(`vfio: ${name} has no device cdev (Linux 6.6+ has /dev/vfio/devices)`);
      throw e;
    }
    const opened: number[] = [];
    try {
      const fd = await sys.open(`/dev/vfio/devices/${nodes[0] as string}`, O.RDWR);
      opened.push(fd);
      const iommufd = await sys.open('/dev/iommu', O.RDWR);
      opened.push(iommufd);
      await sys.ioctl(fd, VFIO.DEVICE_BIND_IOMMUFD, { argsz: 24, flags: 0, iommufd, out_devid: 0, token_uuid_ptr: 0n });
      const alloc = { size: 12, flags: 0, out_ioas_id: 0 };
      await sys.ioctl(iommufd, IOMMUFD.IOAS_ALLOC, alloc);
      const attach = { argsz: 12, flags: 0, pt_id: alloc.out_ioas_id };
      await sys.ioctl(fd, VFIO.DEVICE_ATTACH_IOMMUFD_PT, attach);
      const di = { argsz: 24, flags: 0, num_regions: 0, num_irqs: 0, cap_offset: 0, pad: 0 };
      await sys.ioctl(fd, VFIO.DEVICE_GET_INFO, di);
      if ((di.flags & VFIO_DEVICE_FLAGS.PCI) === 0) throw new VfioSetupError(`vfio: ${name} is not a PCI device`);
      const ranges = await readIoasRanges(sys, iommufd, alloc.out_ioas_id);
      return new VfioPciDevice(sys, name, groupId, { container: -1, group: -1, fd, iommufd, ioasId: alloc.out_ioas_id, hwptId: attach.pt_id },
        { flags: di.flags, numRegions: di.num_regions, numIrqs: di.num_irqs }, ranges);
    } catch (e) {
      for (const fd of opened.reverse()) await sys.close(fd).catch(() => undefined);
      throw e;
    }
  }

  /** `VFIO_DEVICE_GET_REGION_INFO` of region `index` (cached). */
  async region(index: number): Promise<RegionInfo> {
    const known = this.#regions.get(index);
    if (known !== undefined) return known;
    const ri = { argsz: 32, flags: 0, index, cap_offset: 0, size: 0n, offset: 0n };
    await this.sys.ioctl(this.fd, VFIO.DEVICE_GET_REGION_INFO, ri);
    const info: RegionInfo = { index, flags: ri.flags, size: ri.size, offset: ri.offset };
    this.#regions.set(index, info);
    return info;
  }

  /** Maps all of region `index` (a BAR) shared, read-write; unmapped again by {@link close}. */
  async mapRegion(index: number): Promise<Mapping> {
    const r = await this.region(index);
    const map = await this.sys.mmap(null, r.size, PROT_RW, MAP.SHARED, this.fd, r.offset);
    this.#maps.push(map);
    return map;
  }

  /** Reads `size` (1, 2 or 4) bytes of config space at `off`, little-endian. */
  async configRead(off: number, size: 1 | 2 | 4 = 4): Promise<number> {
    const r = await this.region(VFIO_PCI_REGION.CONFIG);
    const b = new Uint8Array(4);
    await this.sys.pread(this.fd, b, r.offset + BigInt(off), size);
    return new DataView(b.buffer).getUint32(0, true) & (size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1);
  }

  /** Writes `size` (1, 2 or 4) bytes of config space at `off`. */
  async configWrite(off: number, value: number, size: 1 | 2 | 4 = 4): Promise<void> {
    const r = await this.region(VFIO_PCI_REGION.CONFIG);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    await this.sys.pwrite(this.fd, b, r.offset + BigInt(off), size);
  }

  /** Sets Memory Space and Bus Master in the command register (vfio-pci leaves them to the driver). */
  async enableBusMaster(): Promise<void> {
    const cmd = await this.configRead(4, 2);
    await this.configWrite(4, cmd | 0x6, 2);
  }

  /**
   * `VFIO_IOMMU_MAP_DMA` of `size` bytes of user memory at `vaddr`; at `iova` when given, else at an IOVA
   * this device's allocator picks. Returns the IOVA.
   */
  async dmaMap(vaddr: bigint, size: number, opts: { iova?: bigint; read?: boolean; write?: boolean } = {}): Promise<bigint> {
    const iova = opts.iova ?? this.#iovas.alloc(size);
    const flags = (opts.read === false ? 0 : VFIO_DMA_MAP_FLAG.READ) | (opts.write === false ? 0 : VFIO_DMA_MAP_FLAG.WRITE);
    try {
      if (this.iommufd >= 0) {
        const M = IOMMU_IOAS_MAP;
        const f = M.FIXED_IOVA | (opts.read === false ? 0 : M.READABLE) | (opts.write === false ? 0 : M.WRITEABLE);
        await this.sys.ioctl(this.iommufd, IOMMUFD.IOAS_MAP, { size: 40, flags: f, ioas_id: this.ioasId, __reserved: 0, user_va: vaddr, length: BigInt(size), iova });
      } else {
        await this.sys.ioctl(this.container, VFIO.IOMMU_MAP_DMA, { argsz: 32, flags, vaddr, iova, size: BigInt(size) });
      }
    } catch (e) {
      if (opts.iova === undefined) this.#iovas.free(iova);
      throw e;
    }
    if (opts.iova !== undefined) this.#iovas.reserve(iova, size);
    return iova;
  }

  /** `VFIO_IOMMU_UNMAP_DMA` (or `IOMMU_IOAS_UNMAP`) of `[iova, iova + size)` mapped with {@link dmaMap} (a buffer from {@link allocDma} goes with {@link freeDma}); returns the bytes unmapped. */
  async dmaUnmap(iova: bigint, size: number): Promise<bigint> {
    if (this.iommufd >= 0) {
      const u = { size: 24, ioas_id: this.ioasId, iova, length: BigInt(size) };
      await this.sys.ioctl(this.iommufd, IOMMUFD.IOAS_UNMAP, u);
      this.#iovas.free(iova);
      return u.length;
    }
    const arg = { argsz: 24, flags: 0, iova, size: BigInt(size) };
    await this.sys.ioctl(this.container, VFIO.IOMMU_UNMAP_DMA, arg);
    this.#iovas.free(iova);
    return arg.size;
  }

  /**
   * Allocates `size` bytes of anonymous memory, faults it in and maps it for the device ({@link dmaMap}).
   *
   * In no-IOMMU mode nothing is mapped: the buffer is locked (`mlock`, so its pages stay resident) and
   * each page's physical address read from `/proc/self/pagemap` is its bus address. Physical memory is
   * contiguous only page by page: a multi-page buffer whose frames are not consecutive is refused (a
   * {@link VfioSetupError}, the memory freed) unless `pageByPage` says the caller uses {@link DmaBuffer.pages}.
   */
  async allocDma(size: number, opts: AllocDmaOptions = {}): Promise<DmaBuffer> {
    const len = (size + PAGE_MASK) & ~PAGE_MASK;
    const map = await this.sys.mmap(null, len, PROT_RW, MAP.PRIVATE | MAP.ANONYMOUS | MAP.POPULATE);
    let buf: DmaBuffer;
    try {
      if (this.noiommu) {
        buf = await this.#physBuffer(map, len, opts.pageByPage === true);
      } else {
        const iova = await this.dmaMap(map.addr, len, opts);
        const pages = Array.from({ length: len / PAGE }, (_, i) => iova + BigInt(i * PAGE));
        buf = { map, vaddr: map.addr, iova, size: len, pages, contiguous: true };
      }
    } catch (e) {
      await this.sys.munmap(map.addr, map.length);
      throw e;
    }
    this.#dma.set(buf.iova, buf);
    return buf;
  }

  /** A no-IOMMU buffer: locked, each page's physical address from pagemap. */
  async #physBuffer(map: Mapping, len: number, pageByPage: boolean): Promise<DmaBuffer> {
    await this.sys.mlock(map.addr, len);
    const pages: bigint[] = [];
    for (let off = 0; off < len; off += PAGE) pages.push(await physAddr(this.sys, map.addr + BigInt(off)));
    const first = pages[0] as bigint;
    const contiguous = pages.every((p, i) => p === first + BigInt(i * PAGE));
    if (!contiguous && !pageByPage) {
      throw new VfioSetupError(`vfio: no-IOMMU buffer of ${len} bytes is not physically contiguous (frames ${pages.map(hex).join(', ')}); allocate page by page or pass pageByPage`);
    }
    return { map, vaddr: map.addr, iova: first, size: len, pages, contiguous };
  }

  /**
   * Unmaps `buf` from the device (the kernel invalidates the IOTLB and unpins), then frees its memory. In
   * no-IOMMU mode there is nothing to unmap: the device can still reach the freed frames.
   */
  async freeDma(buf: DmaBuffer): Promise<void> {
    if (this.#dma.get(buf.iova) === buf) {
      this.#dma.delete(buf.iova);
      if (!this.noiommu) await this.dmaUnmap(buf.iova, buf.size);
    }
    await this.sys.munmap(buf.map.addr, buf.map.length);
  }

  /**
   * The container's free DMA mapping count (`VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`), or undefined without the
   * capability.
   */
  async dmaAvail(): Promise<number | undefined> {
    if (this.iommufd >= 0 || this.noiommu) return undefined;
    const info = await iommuInfo(this.sys, this.container);
    const cap = infoCaps(vfio_iommu_type1_info, info, { [VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL]: vfio_iommu_type1_info_dma_avail })
      .find((c) => c.id === VFIO_IOMMU_TYPE1_INFO_CAP.DMA_AVAIL);
    return cap === undefined ? undefined : (cap.value.avail as number);
  }

  /**
   * Creates `count` eventfds and routes vectors `0 .. count-1` of interrupt index `index` (default MSI-X)
   * to them with `VFIO_DEVICE_SET_IRQS`. Returns the eventfds, vector order.
   */
  async enableIrqs(index: number, count: number): Promise<number[]> {
    await this.disableIrqs(index);
    const efds: number[] = [];
    for (let i = 0; i < count; i++) efds.push(await this.sys.eventfd(0, 0));
    try {
      await this.sys.ioctl(this.fd, VFIO.DEVICE_SET_IRQS, {
        argsz: 20 + 4 * count, flags: VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER, index, start: 0, count,
        data: new Uint8Array(Int32Array.from(efds).buffer),
      });
    } catch (e) {
      for (const efd of efds) await this.sys.close(efd);
      throw e;
    }
    this.#eventfds.set(index, efds);
    return efds;
  }

  /** {@link enableIrqs} for MSI-X (`VFIO_PCI_MSIX_IRQ_INDEX`). */
  enableMsix(count: number): Promise<number[]> {
    return this.enableIrqs(2, count);
  }

  /** Tears down interrupt index `index` (SET_IRQS with count 0) and closes its eventfds. */
  async disableIrqs(index: number): Promise<void> {
    const efds = this.#eventfds.get(index);
    if (efds === undefined) return;
    this.#eventfds.delete(index);
    await this.sys.ioctl(this.fd, VFIO.DEVICE_SET_IRQS, {
      argsz: 20, flags: VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_TRIGGER, index, start: 0, count: 0,
    });
    for (const efd of efds) await this.sys.close(efd);
  }

  /** Blocks until eventfd `efd` is signalled; returns the number of interrupts it counted. */
  async waitIrq(efd: number): Promise<bigint> {
    await this.sys.read(efd, this.#cnt);
    return this.#cntView.getBigUint64(0, true);
  }

  /**
   * Waits up to `timeoutMs` (-1: forever) for any of `efds`; returns the ones that fired, each already read
   * (its count consumed), in the order given.
   */
  async waitAny(efds: readonly number[], timeoutMs = -1): Promise<number[]> {
    const fds: PollFd[] = efds.map((fd) => ({ fd, events: POLL.IN }));
    await this.sys.poll(fds, timeoutMs);
    const fired: number[] = [];
    for (const p of fds) {
      if (((p.revents ?? 0) & POLL.IN) === 0) continue;
      await this.sys.read(p.fd, this.#cnt, 8);
      fired.push(p.fd);
    }
    return fired;
  }

  /** `VFIO_DEVICE_RESET` (the device must report `VFIO_DEVICE_FLAGS_RESET`, else the kernel says EINVAL). */
  async reset(): Promise<void> {
    await this.sys.ioctl(this.fd, VFIO.DEVICE_RESET);
  }

  /** The device's `reset_method` in sysfs: the methods `VFIO_DEVICE_RESET` tries, in order (empty without one). */
  async resetMethods(): Promise<string[]> {
    try {
      return (await readText(this.sys, `/sys/bus/pci/devices/${this.bdf}/reset_method`)).split(' ').filter((m) => m !== '');
    } catch (e) {
      if (e instanceof SysError && e.code === 'ENOENT') return [];
      throw e;
    }
  }

  /** Whether the kernel offers a reset for this device (`VFIO_DEVICE_FLAGS_RESET`). */
  get canReset(): boolean {
    return (this.info.flags & VFIO_DEVICE_FLAGS.RESET) !== 0;
  }

  /**
   * Releases everything, device first: BAR mappings, interrupts and their eventfds, DMA buffers (unmapped
   * from the device before their memory is freed), then the device, group and container fds. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const m of this.#maps.splice(0)) await this.sys.munmap(m.addr, m.length);
    for (const index of Array.from(this.#eventfds.keys())) await this.disableIrqs(index);
    for (const buf of Array.from(this.#dma.values())) await this.freeDma(buf);
    await this.sys.close(this.fd);
    if (this.iommufd >= 0) {
      await this.sys.close(this.iommufd);
      return;
    }
    await this.sys.close(this.group);
    await this.sys.close(this.container);
  }
}

/** `VFIO_IOMMU_GET_INFO` with room for its capability chain. */
async function iommuInfo(sys: Sys, container: number): Promise<{ flags: number; iova_pgsizes: bigint; cap_offset: number; caps: Uint8Array }> {
  const info = { argsz: 24, flags: 0, iova_pgsizes: 0n, cap_offset: 0, pad: 0, caps: new Uint8Array(0) };
  await sys.ioctl(container, VFIO.IOMMU_GET_INFO, info);
  if (info.argsz > 24) {
    // The chain did not fit: the kernel raised argsz; ask again with that much room (vfio.rst's pattern).
    const full = { argsz: info.argsz, flags: 0, iova_pgsizes: 0n, cap_offset: 0, pad: 0, caps: new Uint8Array(info.argsz - 24) };
    await sys.ioctl(container, VFIO.IOMMU_GET_INFO, full);
    return full;
  }
  return info;
}

/** The container's IOVA ranges from the IOVA_RANGE capability (the whole 64-bit space without one). */
async function readIovaRanges(sys: Sys, container: number): Promise<IovaRange[]> {
  const info = await iommuInfo(sys, container);
  const cap = infoCaps(vfio_iommu_type1_info, info, { [VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE]: vfio_iommu_type1_info_cap_iova_range })
    .find((c) => c.id === VFIO_IOMMU_TYPE1_INFO_CAP.IOVA_RANGE);
  if (cap === undefined) return [{ start: 0n, end: (1n << 64n) - 1n }];
  const ranges = cap.value.iova_ranges as { start: bigint; end: bigint }[];
  return ranges.map((r) => ({ start: r.start, end: r.end }));
}

/**
 * The IOAS's IOVA ranges (`IOMMU_IOAS_IOVA_RANGES`): asked with room for 16, asked again with the count the
 * kernel wrote back on `EMSGSIZE`; the array lives in a page of the process mapped for the call.
 */
async function readIoasRanges(sys: Sys, iommufd: number, ioasId: number): Promise<IovaRange[]> {
  const page = await sys.mmap(null, PAGE, PROT_RW, MAP.PRIVATE | MAP.ANONYMOUS);
  try {
    let num = 16;
    for (;;) {
      const arg = { size: 32, ioas_id: ioasId, num_iovas: num, __reserved: 0, allowed_iovas: page.addr, out_iova_alignment: 0n };
      try {
        await sys.ioctl(iommufd, IOMMUFD.IOAS_IOVA_RANGES, arg);
      } catch (e) {
        if (e instanceof SysError && e.code === 'EMSGSIZE' && arg.num_iovas > num && arg.num_iovas <= PAGE / 16) {
          num = arg.num_iovas;
          continue;
        }
        throw e;
      }
      const out: IovaRange[] = [];
      for (let i = 0; i < arg.num_iovas; i++) out.push({ start: page.read64(16 * i), end: page.read64(16 * i + 8) });
      return out;
    }
  } finally {
    await sys.munmap(page.addr, page.length);
  }
}
