/** Where the CLI writes; `main` takes one so that tests run it in-process. */
export interface CliIo {
  /** Writes text (newlines included) to standard output. */
  readonly stdout: (text: string) => void;
  /** Writes text (newlines included) to standard error. */
  readonly stderr: (text: string) => void;
  /** The stream progress bars draw on, when standard error is a terminal; absent otherwise. */
  readonly progressStream?: NodeJS.WritableStream;
}

/** The process's own standard streams. */
export function processIo(): CliIo {
  // A reader that goes away (`dmasim run x | head`) ends the output quietly, as Unix tools do.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
  return {
    stdout: (t) => void process.stdout.write(t),
    stderr: (t) => void process.stderr.write(t),
    ...(process.stderr.isTTY ? { progressStream: process.stderr } : {}),
  };
}

/** A failure the CLI reports as one message and an exit status (2: bad usage or input, 1: the run failed). */
export class CliError extends Error {
  override name = 'CliError';
  readonly exitCode: number;

  constructor(message: string, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}
