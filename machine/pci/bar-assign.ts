import { PCI_BAR0, PCI_COMMAND, type PciFunction } from '../../device-models/index.ts';
import { formatBdf } from '../../iommu/index.ts';
import { ConfigError } from '../config.ts';
import type { PciConfig } from './schema.ts';

/** Where firmware put one BAR. */
export interface BarAssignment {
  readonly bdf: number;
  readonly bar: number;
  readonly kind: 'io' | 'mem32' | 'mem64';
  readonly prefetchable: boolean;
  /** Bytes, as sizing through config space found it. */
  readonly size: number;
  readonly base: number;
}

const PCI_INTERRUPT_LINE = 0x3c;
const CMD_IO = 1 << 0;
const CMD_MEMORY = 1 << 1;

interface Need {
  readonly fn: PciFunction;
  readonly bdf: number;
  readonly bar: number;
  readonly kind: 'io' | 'mem32' | 'mem64';
  readonly prefetchable: boolean;
  readonly size: number;
  readonly order: number;
}

/** Sizes BAR `i` of `fn` as firmware does (write all-ones, read back, restore); 0 for no BAR. */
function sizeBar(fn: PciFunction, i: number): { size: number; kind: Need['kind']; prefetchable: boolean } | undefined {
  const at = PCI_BAR0 + 4 * i;
  const old = fn.configRead(at, 4);
  fn.configWrite(at, 4, 0xffff_ffff);
  const lo = fn.configRead(at, 4);
  fn.configWrite(at, 4, old);
  if (lo === 0) return undefined;
  if ((lo & 1) === 1) return { size: (~(lo & ~0x3) + 1) & 0xffff, kind: 'io', prefetchable: false };
  const prefetchable = (lo & 0x8) !== 0;
  if (((lo >>> 1) & 3) !== 2) return { size: (~(lo & ~0xf) + 1) >>> 0, kind: 'mem32', prefetchable };
  const oldHi = fn.configRead(at + 4, 4);
  fn.configWrite(at + 4, 4, 0xffff_ffff);
  const hi = fn.configRead(at + 4, 4);
  fn.configWrite(at + 4, 4, oldHi);
  const mask = BigInt.asUintN(64, (BigInt(hi) << 32n) | BigInt(lo & ~0xf));
  return { size: Number(BigInt.asUintN(64, ~mask + 1n)), kind: 'mem64', prefetchable };
}

/**
 * BAR assignment as firmware (SeaBIOS `pci_bios_map_devices`, OVMF) does it before the OS boots, and as
 * Linux keeps it (no `pci=realloc`). Each BAR is sized through configuration space; I/O BARs go in the I/O
 * window, 32-bit memory BARs (prefetchable or not) in the 32-bit window below 4 GiB, 64-bit memory BARs in the
 * 64-bit window above 4 GiB. Within a window BARs are placed largest first, each naturally aligned (its
 * size), ties in probe order then BAR index, so power-of-two sizes pack without holes. The bases are written
 * through configuration space. Firmware then leaves Command with I/O and memory decode on for the spaces the
 * function has BARs in and bus mastering off (the driver's `pci_set_master` turns it on), and writes the
 * INTx line it routed into Interrupt Line. A window too small for its BARs is a configuration error.
 */
export function assignBars(
  functions: readonly { readonly bdf: number; readonly fn: PciFunction; readonly intxLine: number }[],
  pci: PciConfig,
): BarAssignment[] {
  const needs: Need[] = [];
  let order = 0;
  for (const { bdf, fn } of functions) {
    for (let i = 0; i < 6; i++) {
      const s = sizeBar(fn, i);
      if (s === undefined) continue;
      needs.push({ fn, bdf, bar: i, ...s, order: order++ });
      if (s.kind === 'mem64') i++;
    }
  }
  const out: BarAssignment[] = [];
  const windows = { io: pci.io, mem32: pci.mmio32, mem64: pci.mmio64 } as const;
  for (const kind of ['io', 'mem32', 'mem64'] as const) {
    const w = windows[kind];
    let next = w.start;
    const list = needs.filter((n) => n.kind === kind).sort((a, b) => b.size - a.size || a.order - b.order);
    for (const n of list) {
      const base = Math.ceil(next / n.size) * n.size;
      if (base + n.size > w.start + w.size) {
        throw new ConfigError([`pci: ${formatBdf(n.bdf)} BAR${n.bar} (${n.size} bytes) does not fit in the ${kind === 'io' ? 'io' : kind === 'mem32' ? 'mmio32' : 'mmio64'} window`]);
      }
      next = base + n.size;
      const at = PCI_BAR0 + 4 * n.bar;
      n.fn.configWrite(at, 4, base % 2 ** 32);
      if (kind === 'mem64') n.fn.configWrite(at + 4, 4, Math.floor(base / 2 ** 32));
      out.push({ bdf: n.bdf, bar: n.bar, kind, prefetchable: n.prefetchable, size: n.size, base });
    }
  }
  for (const { bdf, fn, intxLine } of functions) {
    const mine = out.filter((a) => a.bdf === bdf);
    const cmd = (mine.some((a) => a.kind === 'io') ? CMD_IO : 0) | (mine.some((a) => a.kind !== 'io') ? CMD_MEMORY : 0);
    fn.configWrite(PCI_COMMAND, 2, fn.configRead(PCI_COMMAND, 2) | cmd);
    if (intxLine >= 0) fn.configWrite(PCI_INTERRUPT_LINE, 1, intxLine);
  }
  return out.sort((a, b) => a.bdf - b.bdf || a.bar - b.bar);
}
