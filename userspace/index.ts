/** User-space helpers written against the kernel's process API: {@link withMachine} for tests. */
export { withMachine, LeakError, type MachineSession, type WithMachineOptions } from './with-machine.ts';
