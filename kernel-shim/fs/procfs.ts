import { E } from '../errno.ts';
import type { Task } from '../task/task.ts';
import type { Current } from '../task/current.ts';
import { MAP, PAGE_SIZE, PROT } from '../uapi/linux.ts';
import type { Vfs } from './vfs.ts';
import type { File, FileOperations, UserBuf } from './file.ts';
import { dirInode, fileInode, symlinkInode, type Inode } from './inode.ts';

const encoder = new TextEncoder();

/**
 * Linux `ptrace_may_access(task, PTRACE_MODE_READ_FSCREDS)` reduced to credentials: the same uid, or root
 * (standing in for `CAP_SYS_PTRACE`, which dmasim's capability table does not name).
 */
function ptraceMayRead(cur: Current, task: Task): boolean {
  return cur.cred.uid === task.cred.uid || cur.cred.uid === 0;
}

/** A read-only text file whose contents are computed per read (procfs `seq_file` style). */
function textFile(mode: number, uid: number, gid: number, text: () => string, openCheck?: (flags: number, cur: Current) => number): Inode {
  const ops: FileOperations = {
    read(_f: File, _cur: Current, buf: UserBuf, pos: number): number {
      const bytes = encoder.encode(text());
      if (pos >= bytes.length) return 0;
      const n = Math.min(buf.length, bytes.length - pos);
      const r = buf.copyOut(bytes.subarray(pos, pos + n));
      return r < 0 ? r : n;
    },
    size: () => 0,
  };
  return fileInode('reg', ops, mode, openCheck === undefined ? { uid, gid } : { uid, gid, openCheck });
}

/** `/proc/<pid>/maps` lines as Linux prints them (`show_map_vma`). */
export function formatMaps(task: Task): string {
  const hex = (n: number, w: number): string => n.toString(16).padStart(w, '0');
  return task.mm.vmas.map((m) => {
    const perms = `${(m.prot & PROT.READ) !== 0 ? 'r' : '-'}${(m.prot & PROT.WRITE) !== 0 ? 'w' : '-'}${(m.prot & PROT.EXEC) !== 0 ? 'x' : '-'}${(m.flags & MAP.TYPE) === MAP.PRIVATE ? 'p' : 's'}`;
    const rdev = m.file?.inode.kind === 'file' ? m.file.inode.rdev : undefined;
    const dev = rdev === undefined ? '00:00' : `${hex(rdev.major, 2)}:${hex(rdev.minor, 2)}`;
    const name = m.file?.path ?? (m.backing.kind === 'shm' ? m.backing.obj.name : '');
    const head = `${hex(m.start, 8)}-${hex(m.end, 8)} ${perms} ${hex(m.pgoff * PAGE_SIZE, 8)} ${dev} 0`;
    return name.length > 0 ? `${head.padEnd(73, ' ')}${name}\n` : `${head} \n`;
  }).join('');
}

/**
 * `/proc/<pid>/pagemap` (Linux `pagemap_read`): 8 bytes per virtual page at offset `vpn * 8`; the position
 * and count must be multiples of 8 (`EINVAL`); frame numbers only for readers with `CAP_SYS_ADMIN`
 * (decided per open file, as Linux does at open); a process that has exited reads as empty.
 */
function pagemapFile(task: Task): Inode {
  const ops: FileOperations = {
    open(file: File, cur: Current): number {
      file.private = cur.cred.capable('SYS_ADMIN');
      return 0;
    },
    read(file: File, _cur: Current, buf: UserBuf, pos: number): number {
      if (pos % 8 !== 0 || buf.length % 8 !== 0) return E.EINVAL;
      if (buf.length === 0 || task.dead) return 0;
      const first = pos / 8;
      const last = Math.min(first + buf.length / 8, Math.floor(0x7fff_ffff_f000 / PAGE_SIZE));
      if (first >= last) return 0;
      const out = new Uint8Array((last - first) * 8);
      const view = new DataView(out.buffer);
      const showPfn = file.private === true;
      for (let v = first; v < last; v++) view.setBigUint64((v - first) * 8, task.mm.pagemapEntry(v, showPfn), true);
      const r = buf.copyOut(out);
      return r < 0 ? r : out.length;
    },
    size: () => 0x7fff_ffff_f000 / PAGE_SIZE * 8,
  };
  return fileInode('reg', ops, 0o400, { uid: task.cred.uid, gid: task.cred.gid });
}

/** `/proc/<pid>/status`, the lines drivers and tests look at. */
function formatStatus(task: Task): string {
  const { uid, gid } = task.cred;
  return [
    `Name:\t${task.comm}`, `State:\t${task.dead ? 'Z (zombie)' : 'S (sleeping)'}`, `Tgid:\t${task.pid}`, `Pid:\t${task.pid}`,
    `Uid:\t${uid}\t${uid}\t${uid}\t${uid}`, `Gid:\t${gid}\t${gid}\t${gid}\t${gid}`, `FDSize:\t64`,
    `VmLck:\t${String(task.mm.lockedVm * 4).padStart(8, ' ')} kB`, `Threads:\t${task.threads.size}`,
  ].join('\n') + '\n';
}

/** Creates `/proc/<pid>/` for `task`, and `/proc/self` on first use; removed with {@link removeProcDir}. */
export function addProcDir(vfs: Vfs, task: Task): void {
  const base = `/proc/${task.pid}`;
  const { uid, gid } = task.cred;
  const dir = dirInode(0o555, uid, gid);
  vfs.add(base, dir);
  dir.entries.set('pagemap', pagemapFile(task));
  // proc_maps_open -> proc_mem_open(PTRACE_MODE_READ): another user's maps is EACCES although the mode is 0444.
  dir.entries.set('maps', textFile(0o444, uid, gid, () => formatMaps(task), (_flags, cur) => (ptraceMayRead(cur, task) ? 0 : E.EACCES)));
  dir.entries.set('status', textFile(0o444, uid, gid, () => formatStatus(task)));
  dir.entries.set('comm', textFile(0o644, uid, gid, () => `${task.comm}\n`));
  const fd = dirInode(0o500, uid, gid);
  fd.dynamic = () => new Map(task.fds.fds().map((n) => [String(n), symlinkInode((task.fds.get(n) as File).path)] as const));
  dir.entries.set('fd', fd);
  if (typeof vfs.lookup('/proc/self', undefined, false) === 'number') vfs.symlink('/proc/self', (pid: number) => String(pid));
}

/** Removes `/proc/<pid>/`. */
export function removeProcDir(vfs: Vfs, task: Task): void {
  vfs.remove(`/proc/${task.pid}`);
}

/**
 * `/proc/sys/kernel/tainted` (mode 0644 as in Linux; writing a mask, which Linux allows to root, is not
 * modelled): the kernel's taint mask in decimal, `proc_taint`'s format.
 */
export function addProcSysKernel(vfs: Vfs, tainted: () => number): void {
  vfs.mkdirp('proc/sys/kernel');
  vfs.add('/proc/sys/kernel/tainted', textFile(0o644, 0, 0, () => `${tainted()}\n`));
}
