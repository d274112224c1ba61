import { O, type Sys } from '../kernel-shim/index.ts';

/**
 * Reading and writing small text files the way a C driver does with `open`/`read`/`write`/`close`
 * (sysfs attributes, `/proc/self/status`): the helpers the driver library and the scenarios share.
 */

const decoder = new TextDecoder();

/** The text of the file at `path` (one `read` of up to 4 KiB, as sysfs gives an attribute), trimmed. */
export async function readText(sys: Sys, path: string): Promise<string> {
  const fd = await sys.open(path, O.RDONLY);
  try {
    const buf = new Uint8Array(4096);
    const n = await sys.read(fd, buf);
    return decoder.decode(buf.subarray(0, n)).trim();
  } finally {
    await sys.close(fd);
  }
}

/** Writes `text` to the file at `path` (a sysfs attribute's store). */
export async function writeText(sys: Sys, path: string, text: string): Promise<void> {
  const fd = await sys.open(path, O.WRONLY);
  try {
    await sys.write(fd, text);
  } finally {
    await sys.close(fd);
  }
}
