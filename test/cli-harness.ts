import { main } from '../cli/main.ts';

/** What one `dmasim` invocation did: its exit status and everything it printed. */
export interface Ran {
  code: number;
  out: string;
  err: string;
}

/** Runs the CLI in-process with `argv` (without `dmasim`), capturing stdout and stderr. */
export async function cli(...argv: string[]): Promise<Ran> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t) });
  return { code, out, err };
}
