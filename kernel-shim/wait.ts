import { WaitQueue } from '../sim/index.ts';

/**
 * A kernel wait queue head (Linux `wait_queue_head_t`): threads sleep on its simulator queue, and `poll`
 * registers callbacks so that one `poll()` can wait on many heads. {@link wake} wakes both.
 */
export class WaitHead {
  /** The simulator queue sleeping threads wait in. */
  readonly queue: WaitQueue;
  readonly #pollers = new Set<() => void>();

  constructor(name: string) {
    this.queue = new WaitQueue(name);
  }

  /** Wakes every sleeper and poller (Linux `wake_up_interruptible_all`). */
  wake(): void {
    if (this.queue.length > 0) this.queue.wakeAll();
    if (this.#pollers.size > 0) for (const f of Array.from(this.#pollers)) f();
  }

  /** Registers a poll callback; returns the function that removes it. */
  addPoller(f: () => void): () => void {
    this.#pollers.add(f);
    return () => this.#pollers.delete(f);
  }

  /** Sleepers plus pollers. */
  get waiters(): number {
    return this.queue.length + this.#pollers.size;
  }
}
