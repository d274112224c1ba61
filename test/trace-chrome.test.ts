import { describe, expect, it } from 'vitest';
import { Stats, TraceBus } from '../sim/index.ts';
import { ChromeTraceWriter, nsToUs, traceValueToJson } from '../sim/trace-chrome.ts';

interface Ev {
  name: string;
  ph: string;
  pid: number;
  tid?: number;
  ts?: number;
  dur?: number;
  s?: string;
  cat?: string;
  args: Record<string, unknown>;
}

function parse(doc: string): Ev[] {
  const v: unknown = JSON.parse(doc);
  expect(Array.isArray(v)).toBe(true);
  return v as Ev[];
}

describe('ChromeTraceWriter', () => {
  it('writes one named pid, one named track per source, instants and spans in microseconds', () => {
    const bus = new TraceBus();
    const w = new ChromeTraceWriter({ processName: 'machine-a', pid: 7 });
    const detach = w.attach(bus);
    bus.emit(1500, 'iommu', 'walk.step', { level: 4, pte: 0xdead_beef_0000_0003n });
    bus.span(2001, 999, 'edu@00:03.0', 'dma.read', { len: 4096 });
    bus.emit(3, 'iommu', 'fault', { reason: 'R', addrs: [1n, 2] });
    detach();
    bus.emit(4, 'iommu', 'ignored');
    const evs = parse(w.finish());

    const meta = evs.filter((e) => e.ph === 'M');
    expect(meta.find((e) => e.name === 'process_name')).toMatchObject({ pid: 7, args: { name: 'machine-a' } });
    const threads = meta.filter((e) => e.name === 'thread_name').map((e) => [e.tid, e.args['name']]);
    expect(threads).toEqual([
      [1, 'iommu'],
      [2, 'edu@00:03.0'],
    ]);
    expect(evs.every((e) => e.pid === 7)).toBe(true);

    const body = evs.filter((e) => e.ph !== 'M');
    expect(body).toEqual([
      { name: 'walk.step', cat: 'iommu', ph: 'i', s: 't', ts: 1.5, pid: 7, tid: 1, args: { level: 4, pte: '0xdeadbeef00000003' } },
      { name: 'dma.read', cat: 'edu@00:03.0', ph: 'X', ts: 2.001, dur: 0.999, pid: 7, tid: 2, args: { len: 4096 } },
      { name: 'fault', cat: 'iommu', ph: 'i', s: 't', ts: 0.003, pid: 7, tid: 1, args: { reason: 'R', addrs: ['0x1', 2] } },
    ]);
  });

  it('writes the counters of a Stats snapshot at the end, at the latest time seen by default', () => {
    const stats = new Stats();
    stats.counter('iommu', 'iotlb.hit').value = 5;
    stats.counter('iommu', 'iotlb.miss').value = 2;
    stats.counter('edu', 'irq').value = 1;
    const w = new ChromeTraceWriter();
    w.record({ time: 100, source: 'edu', kind: 'x', durNs: 50, fields: {} });
    const counters = parse(w.finish({ stats })).filter((e) => e.ph === 'C');
    expect(counters).toEqual([
      { name: 'edu', ph: 'C', ts: 0.15, pid: 1, args: { irq: 1 } },
      { name: 'iommu', ph: 'C', ts: 0.15, pid: 1, args: { 'iotlb.hit': 5, 'iotlb.miss': 2 } },
    ]);
    const w2 = new ChromeTraceWriter();
    expect(parse(w2.finish({ stats, timeNs: 2000 })).filter((e) => e.ph === 'C').map((e) => e.ts)).toEqual([2, 2]);
  });

  it('streams to a sink in chunks whose concatenation is the same document', () => {
    const feed = (w: ChromeTraceWriter): void => {
      for (let i = 0; i < 500; i++) w.record({ time: i * 7, source: `s${i % 3}`, kind: 'k', fields: { i } });
    };
    const whole = new ChromeTraceWriter();
    feed(whole);
    const expected = whole.finish();

    const chunks: string[] = [];
    const streamed = new ChromeTraceWriter({ sink: (c) => chunks.push(c), chunkChars: 256 });
    feed(streamed);
    expect(chunks.length).toBeGreaterThan(10);
    expect(streamed.finish()).toBe('');
    expect(chunks.join('')).toBe(expected);
    expect(parse(expected).filter((e) => e.ph === 'i')).toHaveLength(500);
  });

  it('an empty trace is still a valid document', () => {
    expect(parse(new ChromeTraceWriter().finish())).toEqual([{ name: 'process_name', ph: 'M', pid: 1, tid: 0, args: { name: 'dmasim' } }]);
  });

  it('refuses records after finish and a second finish', () => {
    const w = new ChromeTraceWriter();
    w.finish();
    expect(() => w.record({ time: 0, source: 'a', kind: 'b', fields: {} })).toThrow(/after the Chrome trace was finished/);
    expect(() => w.finish()).toThrow(/finished twice/);
  });

  it('converts values exactly', () => {
    expect(traceValueToJson(2n ** 64n - 1n)).toBe('0xffffffffffffffff');
    expect(traceValueToJson(-16n)).toBe('-0x10');
    expect(traceValueToJson(Number.NaN)).toBe('NaN');
    expect(traceValueToJson(null)).toBe(null);
    expect(traceValueToJson([true, 'x', [3n]])).toEqual([true, 'x', ['0x3']]);
    expect(nsToUs(1)).toBe(0.001);
    expect(nsToUs(123_456_789)).toBe(123456.789);
  });
});
