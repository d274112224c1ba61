import { WaitQueue } from '../sim/index.ts';
import { DMA_START } from '../device-models/index.ts';
import { formatBdf } from '../iommu/index.ts';
import type { Machine, MachineConfig } from '../machine/index.ts';
import type { Scenario, ScenarioContext } from './scenario.ts';

/** The vector the scenario programs into edu's MSI capability. */
const VECTOR = 0x41;
const MSI_CAP = 0x40;
const BYTES = 256;

function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** The configuration with an edu added at 00:03.0 unless the given one already has an edu. */
function withEdu(c: MachineConfig): MachineConfig {
  if (c.pci.devices.some((d) => d.type === 'edu')) return c;
  return { ...c, pci: { ...c.pci, devices: [...c.pci.devices, { type: 'edu', bdf: 0x18, acs: false }] } };
}

/**
 * edu programmed directly through the machine's MMIO, with no kernel: a driver process finds edu's BAR0
 * where firmware put it, reads the identification, checks liveness, turns on bus mastering and MSI (the
 * interrupt controller's handler for the programmed vector wakes it), computes 10! with the completion
 * interrupt, moves a buffer RAM -> edu -> RAM with completion interrupts, acknowledging each, and checks the
 * copy. With the IOMMU enabled in the configuration, nothing programs it (no kernel yet): translation stays
 * off, so DMA passes through untranslated.
 */
async function runEduDirect(ctx: ScenarioContext): Promise<void> {
  const m: Machine = ctx.createMachine(withEdu(ctx.machineConfig));
  const { sim, mmio, pci, intc, memory, frames } = m;
  const slot = pci.functions.find((f) => f.type === 'edu');
  if (slot === undefined) throw new Error('edu-direct: no edu in the machine');
  const bdf = slot.bdf;
  const bar = pci.bars.find((b) => b.bdf === bdf && b.bar === 0);
  if (bar === undefined) throw new Error('edu-direct: edu BAR0 was not assigned');
  const base = bar.base;
  const say = (text: string): void => ctx.out.line(`[${(sim.now / 1000).toFixed(3).padStart(12)} us] ${text}`);
  const irq = new WaitQueue('edu MSI');
  let interrupts = 0;
  intc.onVector(VECTOR, (v, dest) => {
    interrupts++;
    if (m.trace.active) m.trace.emit(sim.now, 'driver', 'irq', { vector: v, destination: dest });
    irq.wakeAll();
  });

  // edu masks RAM-side addresses (28 bits by default): take frames it can reach, as dma_set_mask makes Linux do.
  const mask = pci.edu(bdf).dma.mask;
  const dmaFrame = (): number => {
    const spare: number[] = [];
    for (;;) {
      const f = frames.alloc();
      if (f < 0) throw new Error('edu-direct: no frame below the DMA mask');
      if ((BigInt(f * 4096 + 4095) & ~mask) === 0n) {
        for (const x of spare) frames.free(x);
        return f * 4096;
      }
      spare.push(f);
    }
  };
  let ok = false;
  sim.process('driver', async (p) => {
    say(`edu at ${slot.address} (requester id ${hex(slot.requesterId)}), BAR0 ${hex(base)} (${bar.size >>> 20} MiB), IOMMU ${m.iommu === undefined ? 'absent: identity DMA' : 'present, translation off (no kernel programs it)'}`);
    const id = mmio.read32(base + 0x00);
    say(`ID ${hex(id)}: edu ${id >>> 24}.${(id >>> 16) & 0xff}`);
    mmio.write32(base + 0x04, 0x1234_5678);
    const live = mmio.read32(base + 0x04);
    say(`liveness: wrote 0x12345678, read ${hex(live)} (${live === 0xedcb_a987 ? 'alive' : 'DEAD'})`);

    const cmd = pci.configRead(bdf, 0x04, 2);
    pci.configWrite(bdf, 0x04, 2, cmd | 0x4);
    pci.configWrite(bdf, MSI_CAP + 4, 4, 0xfee0_0000);
    pci.configWrite(bdf, MSI_CAP + 8, 4, 0);
    pci.configWrite(bdf, MSI_CAP + 12, 2, VECTOR);
    pci.configWrite(bdf, MSI_CAP + 2, 2, 0x1);
    say(`Command ${hex(cmd)} -> ${hex(pci.configRead(bdf, 0x04, 2))} (bus master on); MSI to APIC 0, vector ${hex(VECTOR)}`);

    mmio.write32(base + 0x20, 0x80);
    mmio.write32(base + 0x08, 10);
    say('factorial: wrote 10 with the completion interrupt enabled');
    await p.wait(irq, 'factorial interrupt');
    const fact = mmio.read32(base + 0x08);
    say(`interrupt ${hex(VECTOR)}: IRQ_STATUS ${hex(mmio.read32(base + 0x24))}, 10! = ${fact}`);
    mmio.write32(base + 0x64, 0x1);

    const src = dmaFrame();
    const dst = dmaFrame();
    const pattern = new Uint8Array(BYTES);
    for (let i = 0; i < BYTES; i++) pattern[i] = m.rng.u32() & 0xff;
    memory.write(src, pattern, 0, BYTES);
    mmio.write64(base + 0x80, BigInt(src));
    mmio.write64(base + 0x88, BigInt(DMA_START));
    mmio.write64(base + 0x90, BigInt(BYTES));
    mmio.write64(base + 0x98, 0x5n);
    say(`DMA RAM ${hex(src)} -> edu ${hex(DMA_START)}, ${BYTES} bytes`);
    await p.wait(irq, 'DMA to edu');
    say(`interrupt ${hex(VECTOR)}: IRQ_STATUS ${hex(mmio.read32(base + 0x24))}, acknowledged`);
    mmio.write32(base + 0x64, 0x100);
    mmio.write64(base + 0x80, BigInt(DMA_START));
    mmio.write64(base + 0x88, BigInt(dst));
    mmio.write64(base + 0x90, BigInt(BYTES));
    mmio.write64(base + 0x98, 0x7n);
    say(`DMA edu ${hex(DMA_START)} -> RAM ${hex(dst)}, ${BYTES} bytes`);
    await p.wait(irq, 'DMA to RAM');
    say(`interrupt ${hex(VECTOR)}: IRQ_STATUS ${hex(mmio.read32(base + 0x24))}, acknowledged`);
    mmio.write32(base + 0x64, 0x100);
    const back = new Uint8Array(BYTES);
    memory.read(dst, back, 0, BYTES);
    let same = 0;
    for (let i = 0; i < BYTES; i++) if (back[i] === pattern[i]) same++;
    ok = live === 0xedcb_a987 && fact === 3_628_800 && same === BYTES;
    say(`round trip: ${same}/${BYTES} bytes match; ${interrupts} interrupts, ${intc.spurious} spurious`);
  });
  await sim.run();
  ctx.out.line(`done at ${sim.now} ns of virtual time (${formatBdf(bdf)}): ${ok ? 'OK' : 'FAILED'}`);
  if (!ok) throw new Error('edu-direct: a check failed');
}

/** The `edu-direct` scenario. */
export const eduDirect: Scenario = {
  description: 'edu programmed directly through machine MMIO (no kernel): ID, liveness, factorial and DMA with MSI',
  run: runEduDirect,
};
