import { S } from '../uapi/linux.ts';
import type { Current } from '../task/current.ts';
import type { FileOperations } from './file.ts';

/** Common inode fields: type, permissions and owner (checked on open as Linux's `generic_permission`). */
interface InodeBase {
  /** Permission bits (`0o644`). */
  mode: number;
  uid: number;
  gid: number;
}

/** A directory: named entries in insertion order (listings are sorted by the VFS). */
export interface DirInode extends InodeBase {
  readonly kind: 'dir';
  readonly entries: Map<string, Inode>;
  /** A directory whose entries are computed at each lookup (`/proc/<pid>/fd`); `entries` is then unused. */
  dynamic?: () => ReadonlyMap<string, Inode>;
}

/**
 * A file with operations: a character device node, a sysfs attribute, a procfs file, or an anonymous
 * inode (eventfd, memfd). `fileKind` picks the `st_mode` type bits; `openCheck` adds checks beyond the
 * mode bits (sysfs refuses read opens of attributes with no `show`, as kernfs does).
 */
export interface FileInode extends InodeBase {
  readonly kind: 'file';
  readonly fileKind: 'chr' | 'reg' | 'anon';
  readonly ops: FileOperations;
  /** For character devices: major and minor. */
  readonly rdev?: { readonly major: number; readonly minor: number };
  /** Driver data reachable from every open file (Linux `inode->i_private` / `i_cdev`). */
  readonly data?: unknown;
  /** Extra open-time check after the permission check: 0 or `-errno`. */
  openCheck?(flags: number, cur: Current): number;
}

/** A symbolic link. `target` is relative to the link's directory or absolute, as Linux stores it. */
export interface SymlinkInode extends InodeBase {
  readonly kind: 'symlink';
  /** The target, or a function of the looking-up process's pid (`/proc/self`). */
  target: string | ((pid: number) => string);
}

/** Anything the VFS names. */
export type Inode = DirInode | FileInode | SymlinkInode;

/** `st_mode` of `inode`: type bits plus permission bits. */
export function stMode(inode: Inode): number {
  if (inode.kind === 'dir') return S.IFDIR | inode.mode;
  if (inode.kind === 'symlink') return S.IFLNK | inode.mode;
  return (inode.fileKind === 'chr' ? S.IFCHR : S.IFREG) | inode.mode;
}

/** A new directory inode. */
export function dirInode(mode = 0o755, uid = 0, gid = 0): DirInode {
  return { kind: 'dir', entries: new Map(), mode, uid, gid };
}

/** A new file inode. */
export function fileInode(
  fileKind: FileInode['fileKind'], ops: FileOperations, mode: number,
  extra: { uid?: number; gid?: number; rdev?: FileInode['rdev']; data?: unknown; openCheck?: FileInode['openCheck'] } = {},
): FileInode {
  const node: FileInode = {
    kind: 'file', fileKind, ops, mode, uid: extra.uid ?? 0, gid: extra.gid ?? 0,
    ...(extra.rdev === undefined ? {} : { rdev: extra.rdev }),
    ...(extra.data === undefined ? {} : { data: extra.data }),
  };
  if (extra.openCheck !== undefined) node.openCheck = extra.openCheck;
  return node;
}

/** A new symlink inode (mode 0777, as Linux reports links). */
export function symlinkInode(target: string | ((pid: number) => string)): SymlinkInode {
  return { kind: 'symlink', target, mode: 0o777, uid: 0, gid: 0 };
}
