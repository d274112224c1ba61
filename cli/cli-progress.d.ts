/** The part of cli-progress 3 (which ships no types) that `dmasim bench` uses. */
declare module 'cli-progress' {
  /** Bar options. */
  export interface Options {
    format?: string;
    stream?: NodeJS.WritableStream;
    hideCursor?: boolean;
    clearOnComplete?: boolean;
    barsize?: number;
  }
  /** One progress bar. */
  export class SingleBar {
    constructor(options: Options, preset?: unknown);
    start(total: number, value: number, payload?: Record<string, unknown>): void;
    update(value: number, payload?: Record<string, unknown>): void;
    stop(): void;
  }
  /** Built-in looks. */
  export const Presets: { readonly shades_classic: unknown; readonly legacy: unknown };
  const cliProgress: { SingleBar: typeof SingleBar; Presets: typeof Presets };
  export default cliProgress;
}
