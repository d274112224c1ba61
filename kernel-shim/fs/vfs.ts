import { invariant } from '../../sim/index.ts';
import type { Cred } from '../cred.ts';
import { E } from '../errno.ts';
import { dirInode, symlinkInode, type DirInode, type Inode } from './inode.ts';

/** Linux `MAXSYMLINKS`. */
const MAX_SYMLINKS = 40;
/** Linux `PATH_MAX` (bytes, with the terminating NUL). */
const PATH_MAX = 4096;
/** Linux `NAME_MAX`. */
const NAME_MAX = 255;

/** Access wanted by {@link permission}: Linux `MAY_READ` / `MAY_WRITE` / `MAY_EXEC` bits. */
export const MAY = { EXEC: 1, WRITE: 2, READ: 4 } as const;

/**
 * Linux `generic_permission`: owner, group, then other bits; `CAP_DAC_OVERRIDE` allows reading and
 * writing anything and searching any directory, and executing a file with any x bit; `CAP_DAC_READ_SEARCH`
 * allows reading files and searching directories. Returns 0 or `-EACCES`.
 */
export function permission(inode: Inode, mask: number, cred: Cred): number {
  let mode = inode.mode;
  if (cred.uid === inode.uid) mode >>= 6;
  else if (cred.gid === inode.gid) mode >>= 3;
  if ((mask & ~mode & 7) === 0) return 0;
  const isDir = inode.kind === 'dir';
  if (cred.capable('DAC_OVERRIDE')) {
    if ((mask & MAY.EXEC) === 0 || isDir || (inode.mode & 0o111) !== 0) return 0;
  }
  if (cred.capable('DAC_READ_SEARCH')) {
    if (mask === MAY.READ || (isDir && (mask & MAY.WRITE) === 0)) return 0;
  }
  return E.EACCES;
}

/** Who looks a path up: credentials for permission checks, the pid for `/proc/self`. */
export interface LookupCtx {
  readonly cred: Cred;
  readonly pid: number;
}

/** The entries of a directory (computed for dynamic ones). */
export function dirEntries(dir: DirInode): ReadonlyMap<string, Inode> {
  return dir.dynamic === undefined ? dir.entries : dir.dynamic();
}

/** A resolved path: the inode and its canonical absolute path (symlinks followed). */
export interface Resolved {
  readonly inode: Inode;
  readonly path: string;
}

/**
 * The file-system tree: one root holding `/dev`, `/sys` and `/proc` as plain directories of inodes built by
 * the kernel's subsystems. Lookups follow Linux's rules: search permission on each directory (`EACCES`),
 * `ENOENT`, `ENOTDIR`, `ELOOP` after 40 links, `ENAMETOOLONG`; `..` at the root stays there.
 */
export class Vfs {
  readonly root: DirInode = dirInode(0o755);

  /**
   * Resolves `path` (absolute; relative paths are taken from `/`, the only working directory) for `cred`.
   * With `followLast` false, a final symlink is returned itself (`readlink`, `O_NOFOLLOW`).
   */
  lookup(path: string, ctx: LookupCtx | undefined, followLast = true): Resolved | number {
    if (path.length === 0) return E.ENOENT;
    if (path.length >= PATH_MAX) return E.ENAMETOOLONG;
    return this.#walk(path, ctx, followLast, { links: 0 });
  }

  #walk(path: string, ctx: LookupCtx | undefined, followLast: boolean, state: { links: number }): Resolved | number {
    const cred = ctx?.cred;
    const parts = path.split('/').filter((p) => p.length > 0 && p !== '.');
    const stack: { name: string; dir: DirInode }[] = [];
    let node: Inode = this.root;
    for (let i = 0; i < parts.length; i++) {
      const name = parts[i] as string;
      if (name.length > NAME_MAX) return E.ENAMETOOLONG;
      if (node.kind !== 'dir') return E.ENOTDIR;
      if (cred !== undefined) {
        const perm = permission(node, MAY.EXEC, cred);
        if (perm < 0) return perm;
      }
      if (name === '..') {
        const up = stack.pop();
        node = up === undefined ? this.root : up.dir;
        continue;
      }
      const next = dirEntries(node).get(name);
      if (next === undefined) return E.ENOENT;
      const last = i === parts.length - 1;
      if (next.kind === 'symlink' && (!last || followLast)) {
        if (++state.links > MAX_SYMLINKS) return E.ELOOP;
        const target = typeof next.target === 'string' ? next.target : next.target(ctx?.pid ?? 0);
        const base = target.startsWith('/') ? '' : '/' + stack.map((s) => s.name).join('/');
        const rest = parts.slice(i + 1).join('/');
        const joined = `${base}/${target}${rest.length > 0 ? '/' + rest : ''}`;
        return this.#walk(joined, ctx, followLast, state);
      }
      stack.push({ name, dir: node });
      node = next;
    }
    return { inode: node, path: '/' + stack.map((s) => s.name).join('/') };
  }

  /** The directory at `path`, creating missing ones (mode 0755, root). */
  mkdirp(path: string, mode = 0o755): DirInode {
    let dir = this.root;
    for (const name of path.split('/').filter((p) => p.length > 0)) {
      let next = dir.entries.get(name);
      if (next === undefined) {
        next = dirInode(mode);
        dir.entries.set(name, next);
      }
      invariant(next.kind === 'dir', () => `vfs.mkdirp(${path}): ${name} is not a directory`);
      dir = next;
    }
    return dir;
  }

  /** Adds `inode` at `path` (parents created); a name already taken is a kernel bug. */
  add(path: string, inode: Inode): Inode {
    const { dir, name } = this.#parent(path, true);
    invariant(!dir.entries.has(name), () => `vfs.add(${path}): already exists`);
    dir.entries.set(name, inode);
    return inode;
  }

  /** Adds a symlink at `path` pointing to `target`. */
  symlink(path: string, target: string | ((pid: number) => string)): void {
    this.add(path, symlinkInode(target));
  }

  /** Removes `path` (and everything under it); absent is fine. */
  remove(path: string): void {
    const parts = path.split('/').filter((p) => p.length > 0);
    const name = parts.pop();
    const r = this.lookup('/' + parts.join('/'), undefined, true);
    if (name !== undefined && typeof r !== 'number' && r.inode.kind === 'dir') r.inode.entries.delete(name);
  }

  /** Whether `path` exists (no permission checks, symlinks followed). */
  exists(path: string): boolean {
    return typeof this.lookup(path, undefined) !== 'number';
  }

  #parent(path: string, create: boolean): { dir: DirInode; name: string } {
    const parts = path.split('/').filter((p) => p.length > 0);
    const name = parts.pop();
    invariant(name !== undefined, () => `vfs: bad path ${path}`);
    const dirPath = parts.join('/');
    if (create) return { dir: this.mkdirp(dirPath), name };
    const r = this.lookup('/' + dirPath, undefined, true);
    invariant(typeof r !== 'number' && r.inode.kind === 'dir', () => `vfs: ${dirPath} is not a directory`);
    return { dir: r.inode, name };
  }
}
