import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DeadlockError, Priority, Rng, SimInvariantError, Simulator, WaitQueue, type SimProcess } from '../sim/index.ts';

const SEED = 42;

describe('processes', () => {
  it('interleave by virtual time, deterministically', async () => {
    const sim = new Simulator();
    const log: string[] = [];
    for (const [name, d] of [['a', 3], ['b', 2], ['c', 3]] as const) {
      sim.process(name, async (p) => {
        for (let i = 0; i < 3; i++) {
          await p.delay(d);
          log.push(`${sim.now} ${name}`);
        }
      });
    }
    await sim.run();
    expect(log).toEqual(['2 b', '3 a', '3 c', '4 b', '6 a', '6 c', '6 b', '9 a', '9 c']);
  });

  it('never advances time while a process is runnable', async () => {
    const sim = new Simulator();
    const seen: number[] = [];
    sim.schedule(1, () => seen.push(sim.now));
    sim.process('busy', async (p) => {
      for (let i = 0; i < 100; i++) await p.delay(0);
      seen.push(sim.now);
    });
    await sim.run();
    // The run ends when the last process does; the event at 1 ns is still queued for the next run.
    expect(seen).toEqual([0]);
    await sim.run();
    expect(seen).toEqual([0, 1]);
  });

  it('gives random process programs the same interleaving on every run with one seed', async () => {
    async function program(seed: number): Promise<string[]> {
      const sim = new Simulator();
      const rng = new Rng(seed);
      const queues = [new WaitQueue('q0'), new WaitQueue('q1')];
      const log: string[] = [];
      for (let i = 0; i < 6; i++) {
        const steps = Array.from({ length: 20 }, () => [rng.int(0, 3), rng.int(0, 50)] as const);
        sim.process(`p${i}`, async (p) => {
          for (const [op, arg] of steps) {
            if (op === 0) await p.delay(arg);
            else if (op === 1) log.push(`${sim.now} p${i} woke ${(queues[arg % 2] as WaitQueue).wakeAll()}`);
            else if (op === 2) log.push(`${sim.now} p${i} wait ${await p.wait(queues[arg % 2] as WaitQueue, undefined, arg + 1)}`);
            else p.consume(arg);
          }
        });
      }
      await sim.run();
      return log;
    }
    await fc.assert(
      fc.asyncProperty(fc.integer(), async (seed) => {
        expect(await program(seed)).toEqual(await program(seed));
      }),
      { seed: SEED, numRuns: 30 },
    );
    expect(await program(1)).not.toEqual(await program(2));
  });

  it('reports a deadlock naming every blocked process, what it waits in, and the time', async () => {
    const sim = new Simulator();
    const irq = new WaitQueue('irq');
    sim.process('driver', async (p) => {
      await p.delay(7);
      await p.wait(irq, 'read(fd 3) on /dev/uio0');
    });
    sim.process('helper', async (p) => {
      await p.wait(irq);
    });
    const err = await sim.run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DeadlockError);
    expect((err as DeadlockError).time).toBe(7);
    expect((err as DeadlockError).blocked).toEqual([
      { name: 'driver', waitingFor: 'read(fd 3) on /dev/uio0' },
      { name: 'helper', waitingFor: 'wait(irq)' },
    ]);
    expect(String(err)).toMatch(/deadlock at 7 ns[\s\S]*driver: blocked in read\(fd 3\) on \/dev\/uio0/);
  });

  it('names a process stuck on a promise the simulator does not own', async () => {
    const sim = new Simulator();
    sim.process('good', async (p) => {
      await p.delay(1000);
    });
    sim.process('culprit', async (p) => {
      await p.delay(1);
      await new Promise<void>(() => {});
    });
    await expect(sim.run()).rejects.toThrow(/process culprit awaited a promise the simulator does not own \(at 1 ns\)/);
  });

  it('lets a process await its own async helpers (those are not foreign)', async () => {
    const sim = new Simulator();
    async function syscall(p: SimProcess, cost: number): Promise<number> {
      await p.delay(cost);
      await Promise.resolve();
      return p.now;
    }
    let got = 0;
    sim.process('user', async (p) => {
      got = await syscall(p, 5);
      got += await syscall(p, 5);
    });
    await sim.run();
    expect(got).toBe(15);
  });

  it('propagates an error thrown by a body from run()', async () => {
    const sim = new Simulator();
    sim.process('bad', async (p) => {
      await p.delay(2);
      throw new Error('driver bug');
    });
    await expect(sim.run()).rejects.toThrow('driver bug');
  });

  it('runs until a time and leaves the clock there', async () => {
    const sim = new Simulator();
    let ticks = 0;
    sim.process('ticker', async (p) => {
      for (;;) {
        await p.delay(10);
        ticks++;
      }
    });
    await sim.run({ until: 55 });
    expect(ticks).toBe(5);
    expect(sim.now).toBe(55);
    await sim.run({ until: 100 });
    expect(ticks).toBe(10);
  });

  it('wakes queue waiters in order, and times out', async () => {
    const sim = new Simulator();
    const q = new WaitQueue('q');
    const log: string[] = [];
    for (const n of ['x', 'y']) {
      sim.process(n, async (p) => {
        log.push(`${n} ${await p.wait(q)} @${sim.now}`);
      });
    }
    sim.process('z', async (p) => {
      log.push(`z ${await p.wait(q, 'z-wait', 3)} @${sim.now}`);
    });
    sim.schedule(5, () => q.wakeAll(), Priority.HARDWARE);
    await sim.run();
    expect(log).toEqual(['z false @3', 'x true @5', 'y true @5']);
  });

  it('catches up exactly the events due by the local time on a synchronous access', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 40 }), fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 1, maxLength: 10 }), async (evTimes, costs) => {
        const sim = new Simulator();
        const ran: number[] = [];
        for (const t of evTimes) sim.schedule(t, () => ran.push(t), Priority.HARDWARE);
        let ok = true;
        sim.process('driver', async (p) => {
          await p.delay(0);
          for (const c of costs) {
            p.consume(c);
            const local = p.localTime;
            const expected = evTimes.filter((t) => t <= local).length;
            if (ran.length !== expected || ran.some((t) => t > local)) ok = false;
          }
          await p.sync();
          if (sim.now !== costs.reduce((a, b) => a + b, 0)) ok = false;
        });
        await sim.run();
        expect(ok).toBe(true);
      }),
      { seed: SEED, numRuns: 100 },
    );
  });

  it('resumes the processes of one instant in the order their wake-ups were scheduled', async () => {
    const sim = new Simulator();
    const q = new WaitQueue('irq');
    const log: string[] = [];
    sim.process('A', async (p) => {
      await p.delay(10);
      log.push('A');
    });
    sim.process('X', async (p) => {
      await p.wait(q);
      log.push('X');
    });
    sim.process('B', async (p) => {
      await p.delay(10);
      log.push('B');
      await p.delay(0);
      log.push('B again');
    });
    sim.process('Y', async (p) => {
      log.push(`Y ${await p.wait(new WaitQueue('never'), undefined, 10)}`);
      await p.delay(0);
      log.push('Y again');
    });
    // At 10 ns a device wakes X (HARDWARE runs first at an instant, so X's wake-up is scheduled before Y's
    // timeout fires); A and B slept until 10 ns long before, so they come first; Y's timed-out wake-up after X;
    // what they ask at 10 ns comes after all of them.
    sim.schedule(10, () => q.wakeAll(), Priority.HARDWARE);
    await sim.run();
    expect(log).toEqual(['A', 'B', 'X', 'Y false', 'B again', 'Y again']);
  });

  it('runs threads of one program side by side, each blocking only itself', async () => {
    const sim = new Simulator();
    const irq = new WaitQueue('irq');
    const log: string[] = [];
    sim.process('main', async (p) => {
      p.spawn('irq-thread', async (t) => {
        await t.wait(irq);
        log.push(`irq @${sim.now}`);
      });
      await p.delay(10);
      irq.wakeAll();
      log.push(`submitted @${sim.now}`);
      await p.delay(1);
      log.push(`done @${sim.now}`);
    });
    await sim.run();
    expect(log).toEqual(['submitted @10', 'irq @10', 'done @11']);
    expect(sim.processes.map((p) => [p.name, p.parent?.name, p.state])).toEqual([
      ['main', undefined, 'done'],
      ['irq-thread', 'main', 'done'],
    ]);
  });

  it('resumes generator bodies synchronously, with the same semantics', async () => {
    const sim = new Simulator();
    const q = new WaitQueue('q');
    const log: string[] = [];
    sim.process('gen', function* (p) {
      yield p.delay(4);
      log.push(`gen @${sim.now}`);
      const woke: boolean = yield p.wait(q, undefined, 100);
      log.push(`gen woke ${woke} @${sim.now}`);
    });
    sim.process('async', async (p) => {
      await p.delay(6);
      q.wakeAll();
    });
    await sim.run();
    expect(log).toEqual(['gen @4', 'gen woke true @6']);
  });

  it('refuses misuse loudly', async () => {
    const sim = new Simulator();
    sim.process('p', async (p) => {
      await p.delay(1);
    });
    expect(() => sim.runSync()).toThrow(/can run only under await sim.run\(\)/);

    const sim2 = new Simulator();
    sim2.process('double', async (p) => {
      const a = p.delay(1);
      p.delay(2);
      await a;
    });
    await expect(sim2.run()).rejects.toThrow(SimInvariantError);

    const sim3 = new Simulator();
    sim3.process('awaits-in-generator-style', function* (p) {
      yield Promise.resolve(true);
      yield p.delay(1);
    });
    await expect(sim3.run()).rejects.toThrow(/yielded something other than one of its own waits/);

    const sim4 = new Simulator();
    sim4.process('long', async (p) => {
      await p.delay(5);
    });
    const r = sim4.run();
    await expect(sim4.run()).rejects.toThrow(/already running/);
    await r;
  });
});
