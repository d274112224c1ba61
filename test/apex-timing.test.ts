import { apexOff, openApex } from './apex-host.ts';
import { describe, expect, it } from 'vitest';
import { APEX_COMMAND_SIZE, APEX_COMMAND_TIMING, APEX_FETCH_NS, APEX_LINK_DEFAULTS, ApexDevice, ApexIrq, ApexOp, type ApexLinkOptions } from '../device-models/apex/index.ts';

/**
 * The Apex timing model (device-models/apex/README.md, Timing): a command's duration derived by hand from
 * the link parameters, the port's per-access cost and the engine timing, asserted to the nanosecond.
 */

const off = apexOff;
const PHYS = 0x10_0000;
/** Bits per ns per lane after line coding. */
const LANE = { 1: 2, 2: 4, 3: (8 * 128) / 130, 4: (16 * 128) / 130, 5: (32 * 128) / 130 } as const;

/** Slot s -> PHYS + s pages. Ring slot 0, status block slot 1, command buffer slot 2, data slots 3.. */
function open(options: ConstructorParameters<typeof ApexDevice>[1], accessNs: number) {
  const { sim, mem, apex, host, w64 } = openApex(16 << 20, options, { accessNs });
  w64(off('SC_HOST_INTVECCTL'), 4);
  for (let s = 0; s < 16; s++) w64(0x50000 + 8 * s, PHYS + s * 4096 + 1);
  w64(off('IQ_STATUS_BLOCK_BASE'), 0x1000);
  w64(off('IQ_SIZE'), 4);
  w64(off('IQ_CONTROL'), 0b101);
  w64(off('IQ_INT_CONTROL'), 1);
  w64(off('SC_HOST_INT_CONTROL'), 1);
  const run = (cmd: { op: number; len?: number; a?: number; b?: number; c?: number; args?: readonly number[] }) => {
    const o = PHYS + 2 * 4096;
    mem.write32(o, cmd.op);
    mem.write32(o + 4, cmd.len ?? 0);
    mem.write64(o + 8, BigInt(cmd.a ?? 0));
    mem.write64(o + 16, BigInt(cmd.b ?? 0));
    mem.write64(o + 24, BigInt(cmd.c ?? 0));
    for (let k = 0; k < 3; k++) mem.write32(o + 32 + 4 * k, cmd.args?.[k] ?? 0);
    mem.write64(PHYS, 0x2000n);
    mem.write32(PHYS + 8, APEX_COMMAND_SIZE);
    const t0 = sim.now;
    w64(off('IQ_TAIL'), 1);
    sim.runSync({ until: t0 + 10_000_000 });
    const at = (v: number) => (host.messages.find((m) => m.data === v)?.time ?? NaN) - t0;
    return { scHost: at(ApexIrq.SC_HOST_0), instrQueue: at(ApexIrq.INSTR_QUEUE) };
  };
  return { apex, mem, run };
}

/** The README's link formulas, written out independently of the model. */
function linkCosts(l: ApexLinkOptions) {
  const rate = LANE[l.generation] * l.width;
  const wire = (bytes: number, tlps: number) => Math.ceil(((bytes + tlps * l.tlpOverheadBytes) * 8) / rate);
  const write = (n: number) => wire(n, Math.ceil(n / l.maxPayloadBytes));
  const read = (n: number) => {
    let ns = 0;
    for (let done = 0; done < n; done += l.maxReadRequestBytes) {
      const r = Math.min(l.maxReadRequestBytes, n - done);
      ns += l.readLatencyNs + wire(r, Math.ceil(r / l.maxPayloadBytes));
    }
    return ns;
  };
  return { read, write };
}

describe('Apex timing', () => {
  it('a 4 KiB COPY takes, to the ns, what the link, the port and the engine parameters give (Gen2 x1 default)', () => {
    const accessNs = 7;
    const { mem, run } = open({}, accessNs);
    for (let i = 0; i < 4096; i += 4) mem.write32(PHYS + 3 * 4096 + i, i * 2654435761);
    const t = run({ op: ApexOp.COPY, len: 4096, a: 0x3000, c: 0x4000 });
    const l = linkCosts(APEX_LINK_DEFAULTS);
    // Doorbell -> fetch; descriptor (16 B) and command buffer (48 B) reads; the COPY: setup, a 4 KiB read
    // (8 requests of 512 B, 4 completions of 128 B each) and a 4 KiB write (32 TLPs), one port access each.
    const command = APEX_COMMAND_TIMING.setupNs + l.read(4096) + accessNs + l.write(4096) + accessNs;
    const expected = APEX_FETCH_NS + l.read(16) + accessNs + l.read(48) + accessNs + command;
    expect(t.scHost).toBe(expected);
    // By hand for Gen2 x1 (4 bits/ns, so 2 ns a byte): 200 + (600 + 80 + 7) + (600 + 144 + 7)
    // + 100 + 8 * (600 + (512 + 4 * 24) * 2) + 7 + (4096 + 32 * 24) * 2 + 7.
    expect(t.scHost).toBe(200 + 687 + 751 + 100 + 8 * 1816 + 7 + 9728 + 7);
    // INSTR_QUEUE follows the 16-byte status-block write (one TLP).
    expect(t.instrQueue - t.scHost).toBe(l.write(16) + accessNs);
    expect(t.instrQueue - t.scHost).toBe(87);
    for (let i = 0; i < 4096; i += 4) expect(mem.read32(PHYS + 4 * 4096 + i)).toBe(mem.read32(PHYS + 3 * 4096 + i));
  });

  it('follows a configured link: Gen3 x4, MPS 256, MRRS 1024, other overhead and latency', () => {
    const link: ApexLinkOptions = { generation: 3, width: 4, maxPayloadBytes: 256, maxReadRequestBytes: 1024, tlpOverheadBytes: 20, readLatencyNs: 450 };
    const { run } = open({ link }, 0);
    const t = run({ op: ApexOp.COPY, len: 4096, a: 0x3000, c: 0x4000 });
    const l = linkCosts(link);
    expect(t.scHost).toBe(APEX_FETCH_NS + l.read(16) + l.read(48) + APEX_COMMAND_TIMING.setupNs + l.read(4096) + l.write(4096));
  });

  it('charges a subtable fetch per extended-address page: an 8-byte link read plus the port access', () => {
    const accessNs = 5;
    const simple = open({}, accessNs).run({ op: ApexOp.COPY, len: 4096, a: 0x3000, c: 0x4000 });
    const ext = open({}, accessNs);
    // 4096 simple slots; level-0 slot 4096 -> a subtable at page 10 whose entry 0 maps page 3.
    ext.apex.fn.mmioWrite64(2, off('EXTENDED_TABLE'), 4096n);
    ext.apex.fn.mmioWrite64(2, 0x50000 + 8 * 4096, BigInt(PHYS + 10 * 4096) | 1n);
    ext.mem.write64(PHYS + 10 * 4096, BigInt(PHYS + 3 * 4096) | 1n);
    // 2^63 is exact as a number: extended address level-0 0, level-1 0.
    const t = ext.run({ op: ApexOp.COPY, len: 4096, a: 2 ** 63, c: 0x4000 });
    expect(t.scHost - simple.scHost).toBe(linkCosts(APEX_LINK_DEFAULTS).read(8) + accessNs);
  });

  it('MATMUL_I8 computes at the configured rate: 2 M K N operations at `tops` x 1000 per ns', () => {
    const [m, k, n] = [64, 128, 32];
    const cmd = { op: ApexOp.MATMUL_I8, a: 0x3000, b: 0x5000, c: 0x7000, args: [m, k, n] };
    const fast = open({}, 0).run(cmd);
    const slow = open({ compute: { tops: 1 } }, 0).run(cmd);
    expect(slow.scHost - fast.scHost).toBe(Math.ceil((2 * m * k * n) / 1000) - Math.ceil((2 * m * k * n) / 4000));
  });
});

