import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ConfigError,
  createMachine,
  formatSize,
  loadMachineConfig,
  MAX_MEMORY_BYTES,
  parseSize,
  resolveMachineConfig,
  type MachineConfig,
} from '../machine/index.ts';
import { FRAME_SIZE } from '../sim/index.ts';
import { fcOptions } from './fc.ts';

const SMALL = { memory: { size: '16MiB' } } as const;

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('machine configuration', () => {
  it('fills in the defaults', () => {
    const c = resolveMachineConfig({});
    expect(c).toEqual({
      name: 'dmasim',
      seed: 1,
      memory: { size: 2 ** 30, placement: 'scatter', reserved: [{ start: 0, size: FRAME_SIZE }] },
      trace: { counters: true },
      pci: resolveMachineConfig({}).pci,
      iommu: { enabled: false, base: 0xfed9_0000 },
    } satisfies MachineConfig);
    expect(resolveMachineConfig()).toEqual(c);
  });

  it('accepts sizes as numbers, hex strings and binary units; a resolved config resolves to itself', () => {
    const c = resolveMachineConfig({
      seed: 0xffff_ffff,
      memory: { size: '64 KiB', placement: 'sequential', reserved: [{ start: '0x2000', size: '4K' }, { start: 0, size: 4096 }] },
    });
    expect(c.memory).toEqual({ size: 65536, placement: 'sequential', reserved: [{ start: 0x2000, size: 4096 }, { start: 0, size: 4096 }] });
    expect(resolveMachineConfig(c)).toEqual(c);
    expect(resolveMachineConfig({ memory: { size: '1GiB' } }).memory.size).toBe(2 ** 30);
    expect(resolveMachineConfig({ memory: { size: '2g' } }).memory.size).toBe(2 ** 31);
  });

  it('names the field path of every problem', () => {
    const e = configError(() =>
      resolveMachineConfig({ seed: -1, memory: { size: 5000, placement: 'random', reserved: [{ start: 0, size: '4KiB' }, { start: 4095, size: 4096 }] }, extra: 1 }),
    );
    expect(e.issues).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^seed: /),
        expect.stringMatching(/^memory\.size: must be a positive multiple of 4096/),
        expect.stringMatching(/^memory\.placement: /),
        expect.stringMatching(/^memory\.reserved\[1\]\.start: must be 4096-byte aligned/),
        expect.stringMatching(/^\(root\): Unrecognized key: "extra"/),
      ]),
    );
    expect(e.message).toMatch(/^invalid machine configuration:\n {2}- /);
  });

  it('refuses bad sizes with a reason', () => {
    expect(configError(() => resolveMachineConfig({ memory: { size: '1GB' } })).issues[0]).toMatch(/^memory\.size: '1GB': unknown unit 'GB'/);
    expect(configError(() => resolveMachineConfig({ memory: { size: 'lots' } })).issues[0]).toMatch(/not a size/);
    expect(configError(() => resolveMachineConfig({ memory: { size: 0 } })).issues[0]).toMatch(/positive multiple/);
    expect(configError(() => resolveMachineConfig({ memory: { size: '128GiB' } })).issues[0]).toMatch(/at most 64GiB/);
    expect(configError(() => resolveMachineConfig({ memory: { size: '16MiB', reserved: [{ start: '15MiB', size: '2MiB' }] } })).issues).toEqual([
      'memory.reserved[0]: range 0xf00000+2MiB ends beyond memory (16MiB)',
    ]);
    expect(configError(() => resolveMachineConfig({ memory: { size: 1.5 * FRAME_SIZE } })).issues[0]).toMatch(/^memory\.size/);
  });

  it('loads a --machine JSON file and reports bad JSON', () => {
    expect(loadMachineConfig('{"seed": 7, "memory": {"size": "8MiB"}}').memory.size).toBe(8 * 2 ** 20);
    expect(loadMachineConfig({ seed: 7 }).seed).toBe(7);
    const e = configError(() => loadMachineConfig('{"seed": ', 'm.json'));
    expect(e.message).toMatch(/^invalid m\.json:\n {2}- not valid JSON: /);
    expect(configError(() => loadMachineConfig('[1]', 'm.json')).issues[0]).toMatch(/^\(root\): /);
  });

  it('parseSize and formatSize round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_MEMORY_BYTES / FRAME_SIZE }), (frames) => {
        const bytes = frames * FRAME_SIZE;
        expect(parseSize(formatSize(bytes))).toBe(bytes);
      }),
      fcOptions(200),
    );
    expect(parseSize('0xFEE00000')).toBe(0xfee0_0000);
    expect(parseSize('1.5KiB')).toBe(1536);
    expect(parseSize('0.3B')).toEqual({ error: expect.stringMatching(/whole number/) as unknown });
  });
});

describe('createMachine', () => {
  it('wires memory, frames, scheduler, trace and stats from the configuration', () => {
    const m = createMachine({ ...SMALL, name: 'board-a' });
    expect(m.memory.size).toBe(16 * 2 ** 20);
    expect(m.frames.frameCount).toBe(m.memory.frameCount);
    expect(m.frames.policy).toBe('scatter');
    expect(m.frames.isUsed(0)).toBe(true);
    expect(m.frames.freeFrames).toBe(m.memory.frameCount - 1);
    expect(m.sim.trace).toBe(m.trace);
    expect(m.sim.stats).toBe(m.stats);
    expect(m.sim.now).toBe(0);
    expect(m.config.name).toBe('board-a');
  });

  it('the same seed gives the same frame placement; another seed another', () => {
    const placement = (seed: number): number[] => {
      const m = createMachine({ ...SMALL, seed });
      return Array.from({ length: 32 }, () => m.frames.alloc());
    };
    expect(placement(5)).toEqual(placement(5));
    expect(placement(5)).not.toEqual(placement(6));
    // Drawing from the machine's generator does not move the allocator's placement.
    const a = createMachine({ ...SMALL, seed: 5 });
    a.rng.u32();
    a.rng.u32();
    expect(Array.from({ length: 32 }, () => a.frames.alloc())).toEqual(placement(5));
  });

  it('two machines side by side are independent', () => {
    const a = createMachine({ ...SMALL, seed: 9 });
    const b = createMachine({ ...SMALL, seed: 9 });
    expect(a.memory).not.toBe(b.memory);
    a.memory.write32(0x1000, 0xdeadbeef);
    expect(b.memory.read32(0x1000)).toBe(0);
    a.stats.counter('x', 'y').value = 3;
    expect(b.stats.snapshot()).toEqual({});
    const seen: string[] = [];
    b.trace.subscribe((r) => seen.push(r.kind));
    a.trace.emit(0, 'a', 'only-a');
    expect(seen).toEqual([]);
    a.frames.alloc();
    expect(b.frames.freeFrames).toBe(a.frames.freeFrames + 1);
    a.sim.schedule(100, () => undefined);
    a.sim.runSync();
    expect(a.sim.now).toBe(100);
    expect(b.sim.now).toBe(0);
  });

  it('sequential placement and custom reserved ranges', () => {
    const m = createMachine({ memory: { size: '64KiB', placement: 'sequential', reserved: [{ start: 0, size: '8KiB' }] } });
    expect([m.frames.alloc(), m.frames.alloc()]).toEqual([2, 3]);
  });

  it('refuses a bad configuration with a ConfigError', () => {
    expect(() => createMachine({ memory: { size: '3KiB' } })).toThrow(ConfigError);
  });

  it('records a Chrome trace of what is emitted, with the counters at the end', () => {
    const m = createMachine({ ...SMALL, name: 'traced' });
    m.trace.emit(0, 'before', 'not-recorded');
    const rec = m.recordChromeTrace();
    m.sim.schedule(1500, () => m.trace.emit(m.sim.now, 'dev', 'tick', { n: 1n }));
    m.sim.runSync();
    m.stats.counter('dev', 'ticks').value = 1;
    const evs = JSON.parse(rec.finish()) as { name: string; ph: string; ts?: number; args: Record<string, unknown> }[];
    expect(evs[0]).toMatchObject({ ph: 'M', name: 'process_name', args: { name: 'traced' } });
    expect(evs.filter((e) => e.ph === 'i')).toEqual([expect.objectContaining({ name: 'tick', ts: 1.5, args: { n: '0x1' } })]);
    expect(evs.filter((e) => e.ph === 'C')).toEqual([expect.objectContaining({ name: 'dev', ts: 1.5, args: { ticks: 1 } })]);
    expect(m.trace.active).toBe(false);

    const quiet = createMachine({ ...SMALL, trace: { counters: false } });
    quiet.stats.counter('dev', 'ticks').value = 1;
    const chunks: string[] = [];
    const r2 = quiet.recordChromeTrace((c) => chunks.push(c));
    expect(r2.finish()).toBe('');
    expect((JSON.parse(chunks.join('')) as { ph: string }[]).some((e) => e.ph === 'C')).toBe(false);
  });
});
