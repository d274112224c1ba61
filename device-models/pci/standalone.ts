import {
  IdentityDmaPort, MSI_WINDOW_LAST, MSI_WINDOW_START, createDmaResult, resetDmaResult,
  type MsiSink, type PhysicalMemory, type Scheduler,
} from '../../sim/index.ts';
import type { PciFunction } from './function.ts';
import type { IntxSink } from './spec.ts';

/** One message write into the interrupt window, as the host saw it. */
export interface HostMessage {
  readonly time: number;
  readonly requester: number;
  readonly address: number;
  readonly data: number;
}

/** Options of a {@link StandaloneHost}. */
export interface StandaloneOptions {
  /** Requester id to assign (default 00:03.0 = 0x18). */
  readonly requesterId?: number;
  /** Virtual ns per DMA access of the identity port. */
  readonly accessNs?: number;
}

/**
 * One function on a bare host, without a machine: DMA goes straight to physical memory through an
 * {@link IdentityDmaPort}, message writes into the interrupt window are collected in {@link messages}
 * (others are memory writes, as a root complex does), and the INTx level is kept in {@link intxLevel}.
 * For device tests, benchmarks and the device READMEs' examples.
 */
export class StandaloneHost implements MsiSink, IntxSink {
  /** Interrupt-window writes, in order. */
  readonly messages: HostMessage[] = [];
  /** The INTx pin level. */
  intxLevel = false;
  /** INTx edges seen (assertions). */
  intxAssertions = 0;
  readonly port: IdentityDmaPort;
  readonly #sim: Scheduler;
  readonly #mem: PhysicalMemory;
  readonly #buf = new Uint8Array(4);
  readonly #res = createDmaResult();

  constructor(sim: Scheduler, mem: PhysicalMemory, fn: PciFunction, options: StandaloneOptions = {}) {
    this.#sim = sim;
    this.#mem = mem;
    this.port = new IdentityDmaPort(mem, options.accessNs ?? 0);
    fn.attach({ requesterId: options.requesterId ?? 0x18, dma: this.port, msi: this, intx: this });
  }

  /** {@link MsiSink}: the interrupt window is collected; any other address is a 4-byte memory write. */
  msi(requester: number, address: number, data: number): void {
    if (address >= MSI_WINDOW_START && address <= MSI_WINDOW_LAST) {
      this.messages.push({ time: this.#sim.now, requester, address, data });
      return;
    }
    const b = this.#buf;
    b[0] = data;
    b[1] = data >>> 8;
    b[2] = data >>> 16;
    b[3] = data >>> 24;
    resetDmaResult(this.#res);
    this.port.write(requester, address, b, 0, 4, this.#res);
  }

  /** {@link IntxSink}. */
  intx(_requester: number, _pin: number, asserted: boolean): void {
    if (asserted && !this.intxLevel) this.intxAssertions++;
    this.intxLevel = asserted;
  }

  /** The memory the host's DMA reaches. */
  get memory(): PhysicalMemory {
    return this.#mem;
  }
}
