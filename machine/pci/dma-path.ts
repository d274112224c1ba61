import {
  DmaStatus, MSI_WINDOW_LAST, MSI_WINDOW_START, createDmaResult, failDma, resetDmaResult,
  type Counter, type DmaPort, type DmaResult, type MsiSink, type Scheduler,
} from '../../sim/index.ts';

/**
 * The root complex's side of the DMA path (DESIGN.md flow 2): requests arrive from the functions' bus-master
 * gates; writes into the interrupt window 0xFEE00000-0xFEEFFFFF become messages for the interrupt controller
 * and never reach memory; everything else goes downstream, to the IOMMU's translating port when the machine
 * has one, else to the identity port onto memory.
 *
 * dmasim's choices for the window: a DMA read touching it is an Unsupported Request at its first byte (bytes
 * before the window are read); a write there must be one aligned dword (the MSI format), and then its data is
 * the message; any other write touching the window is an Unsupported Request (bytes before it are written,
 * none inside), recorded as `dma.window-malformed`. Wide (>= 2^53) addresses are never in the window.
 */
export class RootComplex implements DmaPort, MsiSink {
  /** Where non-interrupt traffic goes: the IOMMU port or the identity port. */
  readonly downstream: DmaPort;
  readonly #intc: MsiSink;
  readonly #sim: Scheduler;
  readonly #name: string;
  // Counters are made on first use, so that a machine without PCI traffic reports none.
  #msiWrites: Counter | undefined;
  readonly #buf = new Uint8Array(4);
  readonly #res = createDmaResult();

  constructor(sim: Scheduler, downstream: DmaPort, intc: MsiSink, name = 'root-complex') {
    this.#sim = sim;
    this.downstream = downstream;
    this.#intc = intc;
    this.#name = name;
  }

  read(requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    if (addr > MSI_WINDOW_LAST || addr + len <= MSI_WINDOW_START) {
      this.downstream.read(requester, addr, dst, dstOff, len, res);
      if (this.#sim.trace.active) this.#traceDma('dma.read', requester, addr, len, res);
      return;
    }
    // The window is not memory: nothing completes a read there.
    const before = addr < MSI_WINDOW_START ? MSI_WINDOW_START - addr : 0;
    if (before > 0) {
      this.downstream.read(requester, addr, dst, dstOff, before, res);
      if (res.status !== DmaStatus.OK) return;
    }
    this.#traceWindow('dma.window-read', requester, addr, len);
    failDma(res, DmaStatus.UNSUPPORTED, addr + before, 0, before);
  }

  write(requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    if (addr > MSI_WINDOW_LAST || addr + len <= MSI_WINDOW_START) {
      this.downstream.write(requester, addr, src, srcOff, len, res);
      if (this.#sim.trace.active) this.#traceDma('dma.write', requester, addr, len, res);
      return;
    }
    if (len === 4 && (addr & 3) === 0 && addr >= MSI_WINDOW_START) {
      const data = ((src[srcOff] as number) | ((src[srcOff + 1] as number) << 8) | ((src[srcOff + 2] as number) << 16) | ((src[srcOff + 3] as number) << 24)) >>> 0;
      this.#deliver(requester, addr, data);
      res.status = DmaStatus.OK;
      res.bytesDone = 4;
      res.faultReason = 0;
      return;
    }
    const before = addr < MSI_WINDOW_START ? MSI_WINDOW_START - addr : 0;
    if (before > 0) {
      this.downstream.write(requester, addr, src, srcOff, before, res);
      if (res.status !== DmaStatus.OK) return;
    }
    this.#traceWindow('dma.window-malformed', requester, addr, len);
    failDma(res, DmaStatus.UNSUPPORTED, addr + before, 0, before);
  }

  readWide(requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    this.downstream.readWide(requester, addr, dst, dstOff, len, res);
  }

  writeWide(requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    this.downstream.writeWide(requester, addr, src, srcOff, len, res);
  }

  /**
   * {@link MsiSink} for the functions' MSI/MSI-X writes and the IOMMU's event messages: the interrupt window
   * goes to the interrupt controller; any other address is a plain 4-byte memory write down the DMA path
   * (through the IOMMU when there is one), as on real hardware.
   */
  msi(requester: number, address: number, data: number): void {
    if (address >= MSI_WINDOW_START && address <= MSI_WINDOW_LAST) {
      this.#deliver(requester, address, data);
      return;
    }
    const b = this.#buf;
    b[0] = data;
    b[1] = data >>> 8;
    b[2] = data >>> 16;
    b[3] = data >>> 24;
    resetDmaResult(this.#res);
    this.write(requester, address, b, 0, 4, this.#res);
  }

  #deliver(requester: number, address: number, data: number): void {
    (this.#msiWrites ??= this.#sim.stats.counter(this.#name, 'msi')).value++;
    this.#intc.msi(requester, address, data);
  }

  /** One DMA request on the root complex's track: a span of the virtual time its stages reported. */
  #traceDma(kind: string, requester: number, addr: number, len: number, res: DmaResult): void {
    this.#sim.trace.span(this.#sim.now, res.costNs, this.#name, kind, { requester, addr, len, status: res.status, bytesDone: res.bytesDone });
  }

  #traceWindow(kind: string, requester: number, addr: number, len: number): void {
    this.#sim.stats.counter(this.#name, kind).value++;
    const t = this.#sim.trace;
    if (t.active) t.emit(this.#sim.now, this.#name, kind, { requester, addr, len });
  }
}

/**
 * The path of one function that sits behind a bridge taking ownership of its requests (a PCIe-to-PCI bridge:
 * the bus's id with devfn 0; a conventional PCI bridge: its own id): requests reach the root complex under
 * that alias, whatever id the function has, so the IOMMU sees the alias (Linux `pci_for_each_dma_alias`).
 */
export class AliasPort implements DmaPort {
  readonly upstream: DmaPort;
  /** The requester id the root complex sees. */
  readonly alias: number;

  constructor(upstream: DmaPort, alias: number) {
    this.upstream = upstream;
    this.alias = alias;
  }

  read(_requester: number, addr: number, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    this.upstream.read(this.alias, addr, dst, dstOff, len, res);
  }

  write(_requester: number, addr: number, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    this.upstream.write(this.alias, addr, src, srcOff, len, res);
  }

  readWide(_requester: number, addr: bigint, dst: Uint8Array, dstOff: number, len: number, res: DmaResult): void {
    this.upstream.readWide(this.alias, addr, dst, dstOff, len, res);
  }

  writeWide(_requester: number, addr: bigint, src: Uint8Array, srcOff: number, len: number, res: DmaResult): void {
    this.upstream.writeWide(this.alias, addr, src, srcOff, len, res);
  }
}

/** An MsiSink that forwards under a fixed requester id (a function's messages behind an aliasing bridge). */
export class AliasMsi implements MsiSink {
  readonly #up: MsiSink;
  readonly #alias: number;

  constructor(up: MsiSink, alias: number) {
    this.#up = up;
    this.#alias = alias;
  }

  msi(_requester: number, address: number, data: number): void {
    this.#up.msi(this.#alias, address, data);
  }
}
