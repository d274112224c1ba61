import { E } from '../errno.ts';
import { PAGE_SIZE } from '../uapi/linux.ts';
import type { UserPages } from './pages.ts';
import type { ShmObject } from './vma.ts';

/** Largest shared object: its buffer is resizable up to this, so views of it survive growth. */
const SHM_MAX = 1 << 30;

type ResizableBuffer = ArrayBuffer & { resize(n: number): void; readonly maxByteLength: number; readonly resizable: boolean };
const Resizable = ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ResizableBuffer;

/** A new, empty shared object (memfd) with one reference (its file's). */
export function createShm(name: string, seals: number): ShmObject {
  return { size: 0, frames: [], buffer: new Resizable(0, { maxByteLength: SHM_MAX }), seals, writableMaps: 0, name, refs: 1, maps: 0 };
}

/** Page `idx` of `obj` faulted in, or `-EFAULT` past its size (Linux: SIGBUS), `-ENOMEM` when memory runs out. */
export function shmPage(obj: ShmObject, idx: number, pages: UserPages): Uint8Array | number {
  if (idx * PAGE_SIZE >= obj.size) return E.EFAULT;
  const bytes = new Uint8Array(obj.buffer, idx * PAGE_SIZE, PAGE_SIZE);
  if ((obj.frames[idx] ?? -1) < 0) {
    const f = pages.alloc(bytes);
    if (f < 0) return E.ENOMEM;
    obj.frames[idx] = f;
  }
  return bytes;
}

/**
 * Sets the object's size (`ftruncate`): growing extends the buffer; shrinking drops (zeroes and releases)
 * the pages past the end. Returns 0, or `-EFBIG` past the largest object dmasim keeps.
 */
export function resizeShm(obj: ShmObject, size: number, pages: UserPages): number {
  const bytes = Math.ceil(size / PAGE_SIZE) * PAGE_SIZE;
  if (bytes > SHM_MAX) return E.EFBIG;
  const buf = obj.buffer as ResizableBuffer;
  if (bytes > buf.byteLength && buf.resizable === true) buf.resize(bytes);
  const keep = bytes / PAGE_SIZE;
  for (let i = keep; i < obj.frames.length; i++) {
    const f = obj.frames[i] as number;
    if (f >= 0) pages.put(f);
  }
  if (obj.frames.length > keep) obj.frames.length = keep;
  while (obj.frames.length < keep) obj.frames.push(-1);
  // Bytes past the new end read as zeros if the object grows again (Linux truncates the page cache).
  if (size < obj.size) new Uint8Array(obj.buffer).fill(0, size, Math.min(buf.byteLength, Math.ceil(obj.size / PAGE_SIZE) * PAGE_SIZE));
  obj.size = size;
  return 0;
}

/** Drops a reference; the last releases every page. */
export function putShm(obj: ShmObject, pages: UserPages): void {
  if (--obj.refs > 0) return;
  for (let i = 0; i < obj.frames.length; i++) {
    const f = obj.frames[i] as number;
    if (f >= 0) pages.put(f);
    obj.frames[i] = -1;
  }
}
