import type { PhysicalMemory } from '../../sim/index.ts';
import { faultReasonText, FaultReason } from './faults.ts';
import { pageSize } from './iotlb.ts';
import { ContextResult, EntryKind, TranslationType, WalkResult, levelIndex, readContext, walkSecondLevel, type WalkParams, type WalkRecorder } from './walker.ts';

/** The kind of access an explanation is for. */
export type ExplainAccess = 'read' | 'write';

/** What the explainer reads of a live unit (nothing it could change). */
export interface ExplainView {
  readonly mem: PhysicalMemory;
  readonly params: WalkParams;
  /** The latched root-table pointer (-1 when invalid). */
  root(): number;
  translationEnabled(): boolean;
  readonly addressWidth: number;
  /** The IOTLB's translation of `iova` for `did` granting `need`, or -1; must not touch LRU or counters. */
  peekIotlb(did: number, iova: number, need: number): number;
}

/** One entry the walk read. */
export interface ExplainStep {
  readonly entry: 'root' | 'context' | 'pte';
  /** Page-table level (4..1) for `pte`, 0 otherwise. */
  readonly level: number;
  /** Index into its table: bus for root, devfn for context, the IOVA's index bits for a level. */
  readonly index: number;
  /** Physical address of the entry. */
  readonly addr: number;
  /** The entry: 64 bits for a page-table entry, 128 for root and context. */
  readonly value: bigint;
  /** Decoded fields. */
  readonly fields: Readonly<Record<string, number | boolean | string>>;
}

/** A walk, explained. */
export interface ExplainResult {
  readonly rid: number;
  readonly iova: bigint;
  readonly access: ExplainAccess;
  /** `disabled`: translation off; `pass-through`: context TT = 2; `translated`: a second-level walk. */
  readonly mode: 'disabled' | 'pass-through' | 'translated';
  /** Page-table levels of the context (0 when no context was read). */
  readonly levels: number;
  readonly steps: readonly ExplainStep[];
  readonly ok: boolean;
  /** The physical address, when the access translates. */
  readonly phys: bigint | null;
  /** Size of the page that maps it (4 KiB, 2 MiB, 1 GiB), when translated by a walk. */
  readonly pageSize: number | null;
  /** Permissions every level grants, when translated by a walk. */
  readonly perm: { readonly read: boolean; readonly write: boolean } | null;
  readonly fault: { readonly reason: number; readonly text: string } | null;
  /** What the IOTLB would answer instead (a physical address), or null when it holds nothing for this access. */
  readonly iotlb: bigint | null;
  /** The IOTLB holds a translation the tables no longer give: a DMA now would use it. */
  readonly stale: boolean;
}

interface RawEntry {
  kind: number;
  level: number;
  index: number;
  addr: number;
  w: [number, number, number, number];
}

/** Explains the walk for `rid` and `iova` on the unit `v` sees, without side effects. */
export function explainWalk(v: ExplainView, rid: number, iova: bigint, access: ExplainAccess): ExplainResult {
  const raw: RawEntry[] = [];
  const rec: WalkRecorder = {
    entry: (kind, level, index, addr, w0, w1, w2, w3) => raw.push({ kind, level, index, addr, w: [w0, w1, w2, w3] }),
  };
  const base = { rid, iova, access };
  const done = (
    mode: ExplainResult['mode'],
    levels: number,
    r: Pick<ExplainResult, 'ok' | 'phys' | 'pageSize' | 'perm' | 'fault' | 'iotlb' | 'stale'>,
  ): ExplainResult => ({ ...base, mode, levels, steps: raw.map(decodeStep), ...r });
  const none = { pageSize: null, perm: null, iotlb: null, stale: false } as const;
  if (!v.translationEnabled()) return done('disabled', 0, { ...none, ok: true, phys: iova, fault: null });
  const c = new ContextResult();
  if (!readContext(v.mem, v.params, v.root(), rid, c, rec)) return done('translated', 0, { ...none, ok: false, phys: null, fault: faultOf(c.fault) });
  if (c.tt === TranslationType.PASS_THROUGH) return done('pass-through', c.levels, { ...none, ok: true, phys: iova, fault: null });
  const need = access === 'write' ? 2 : 1;
  const limit = 2n ** BigInt(Math.min(c.agaw, v.addressWidth));
  if (iova >= limit) return done('translated', c.levels, { ...none, ok: false, phys: null, fault: faultOf(FaultReason.ADDR_BEYOND_MGAW) });
  const n = Number(iova);
  const w = new WalkResult();
  const ok = walkSecondLevel(v.mem, v.params, c.ptr, c.levels, n, need, w, rec);
  const cached = v.peekIotlb(c.did, n, need);
  const phys = ok ? BigInt(w.pageBase + (n - w.iovaBase)) : null;
  const iotlb = cached < 0 ? null : BigInt(cached);
  return done('translated', c.levels, {
    ok,
    phys,
    pageSize: ok ? pageSize(w.level) : null,
    perm: ok ? { read: (w.perm & 1) !== 0, write: (w.perm & 2) !== 0 } : null,
    fault: ok ? null : faultOf(w.fault),
    iotlb,
    stale: iotlb !== null && iotlb !== phys,
  });
}

function faultOf(reason: number): { reason: number; text: string } {
  return { reason, text: faultReasonText(reason) };
}

function addrOf(lo: number, hi: number): number {
  return (hi & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
}

function decodeStep(e: RawEntry): ExplainStep {
  const [w0, w1, w2, w3] = e.w;
  const q0 = BigInt(w0 >>> 0) | (BigInt(w1 >>> 0) << 32n);
  const q1 = BigInt(w2 >>> 0) | (BigInt(w3 >>> 0) << 32n);
  if (e.kind === EntryKind.ROOT) {
    return { entry: 'root', level: 0, index: e.index, addr: e.addr, value: q0 | (q1 << 64n), fields: { P: (w0 & 1) === 1, CTP: hex(addrOf(w0, w1)) } };
  }
  if (e.kind === EntryKind.CONTEXT) {
    const tt = (w0 >>> 2) & 3;
    const aw = w2 & 7;
    return {
      entry: 'context', level: 0, index: e.index, addr: e.addr, value: q0 | (q1 << 64n),
      fields: {
        P: (w0 & 1) === 1, FPD: (w0 & 2) !== 0, TT: tt, TTname: ['multi-level', 'device-IOTLB', 'pass-through', 'reserved'][tt] ?? '',
        SLPTPTR: hex(addrOf(w0, w1)), AW: aw, AWname: aw === 1 ? '39-bit, 3-level' : aw === 2 ? '48-bit, 4-level' : 'unsupported', DID: (w2 >>> 8) & 0xffff,
      },
    };
  }
  const ps = (w0 & 0x80) !== 0 && (e.level === 2 || e.level === 3);
  const leaf = e.level === 1 || ps;
  return {
    entry: 'pte', level: e.level, index: e.index, addr: e.addr, value: q0,
    fields: { R: (w0 & 1) !== 0, W: (w0 & 2) !== 0, PS: ps, ADDR: hex(addrOf(w0, w1)), leaf },
  };
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** `n` in hex, zero-padded to `digits`, grouped by four with underscores: 0x0000_0012_3456_7000. */
export function hexGrouped(n: bigint, digits = 16): string {
  const s = n.toString(16).padStart(digits, '0');
  const groups: string[] = [];
  for (let i = s.length; i > 0; i -= 4) groups.unshift(s.slice(Math.max(0, i - 4), i));
  return `0x${groups.join('_')}`;
}

/** The IOVA's bit slicing by level: `iova 0x0000_0012_3456_7000 = L4[0x000] L3[0x048] L2[0x1a2] L1[0x167] off 0x000`. */
export function sliceIova(iova: bigint, levels: number): string {
  const lo = Number(iova & 0xffff_ffffn);
  const hi = Number((iova >> 32n) & 0xffff_ffffn);
  const parts: string[] = [];
  for (let l = levels; l >= 1; l--) parts.push(`L${l}[0x${levelIndex(lo, hi, l).toString(16).padStart(3, '0')}]`);
  return `iova ${hexGrouped(iova)} = ${parts.join(' ')} off 0x${(lo & 0xfff).toString(16).padStart(3, '0')}`;
}

function bdf(rid: number): string {
  const h = (n: number, d: number): string => n.toString(16).padStart(d, '0');
  return `${h(rid >>> 8, 2)}:${h((rid >>> 3) & 31, 2)}.${rid & 7}`;
}

function sizeName(bytes: number): string {
  return bytes >= 0x4000_0000 ? `${bytes / 0x4000_0000} GiB` : bytes >= 0x10_0000 ? `${bytes / 0x10_0000} MiB` : `${bytes / 1024} KiB`;
}

/** Prints an explanation: the IOVA's slicing, each entry read with its decoded fields, then the outcome. */
export function formatExplain(r: ExplainResult): string {
  const out: string[] = [];
  out.push(`explain rid 0x${r.rid.toString(16).padStart(4, '0')} (${bdf(r.rid)}) ${r.access} iova ${hexGrouped(r.iova)}`);
  if (r.mode === 'disabled') {
    out.push('translation disabled (GSTS.TES = 0): the address goes to memory untranslated');
    out.push(`=> phys ${hexGrouped(r.iova)}`);
    return out.join('\n');
  }
  out.push(sliceIova(r.iova, r.levels === 0 ? 4 : r.levels));
  for (const s of r.steps) {
    const val = hexGrouped(s.value, s.entry === 'pte' ? 16 : 32);
    const f = s.fields;
    if (s.entry === 'root') out.push(`root    [bus 0x${s.index.toString(16).padStart(2, '0')}] @${hex(s.addr)} = ${val}  P=${f.P ? 1 : 0} CTP=${String(f.CTP)}`);
    else if (s.entry === 'context') {
      out.push(
        `context [devfn 0x${s.index.toString(16).padStart(2, '0')}] @${hex(s.addr)} = ${val}  P=${f.P ? 1 : 0} FPD=${f.FPD ? 1 : 0} TT=${String(f.TT)} (${String(f.TTname)}) ` +
          `AW=${String(f.AW)} (${String(f.AWname)}) DID=${String(f.DID)} SLPTPTR=${String(f.SLPTPTR)}`,
      );
    } else {
      const perm = `${f.R ? 'R' : '-'}${f.W ? 'W' : '-'}`;
      const next = !f.R && !f.W ? 'not present' : f.leaf ? `page ${String(f.ADDR)}${f.PS ? ' (PS)' : ''}` : `table ${String(f.ADDR)}`;
      out.push(`L${s.level}[0x${s.index.toString(16).padStart(3, '0')}] @${hex(s.addr)} = ${val}  ${perm} -> ${next}`);
    }
  }
  if (r.mode === 'pass-through') out.push('context TT = 2: pass-through, the address goes to memory untranslated');
  if (r.ok && r.phys !== null) {
    const size = r.pageSize === null ? '' : ` (${sizeName(r.pageSize)} page, ${r.perm?.read ? 'R' : '-'}${r.perm?.write ? 'W' : '-'})`;
    const off = r.pageSize !== null && r.pageSize > 0x1000 ? `, offset 0x${(r.iova % BigInt(r.pageSize)).toString(16)} in the superpage (L1 bits and the 12-bit offset together)` : '';
    out.push(`=> phys ${hexGrouped(r.phys)}${size}${off}`);
  } else if (r.fault !== null) {
    out.push(`=> FAULT reason 0x${r.fault.reason.toString(16)}: ${r.fault.text}`);
  }
  if (r.iotlb !== null) {
    out.push(r.stale ? `IOTLB: STALE, still translates to ${hexGrouped(r.iotlb)}: a DMA now uses it until an invalidation` : `IOTLB: cached (${hexGrouped(r.iotlb)})`);
  }
  return out.join('\n');
}
