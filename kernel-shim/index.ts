/**
 * The kernel's public API: boot a kernel on a machine, spawn processes, and the types and constants user
 * code sees through `Sys` (errno table, uAPI constants). Everything else under `kernel-shim/` is internal.
 */
export { bootKernel, Kernel, type KernelOptions } from './kernel.ts';
export { Sys, type Thread, type UserPtr, type PollFd } from './task/sys.ts';
export { TaskExit, DEFAULT_RLIMITS, type Proc, type SpawnOptions, type Rlimits } from './task/task.ts';
export { E, Errno, SysError, errnoName, userErrno, type ErrnoCode } from './errno.ts';
export { Mapping, type MemoryAccess } from './mm/mapping.ts';
export { LINUX_VERSIONS, BEHAVIOUR, type LinuxVersion, type Behaviour } from './versions.ts';
export * from './uapi/linux.ts';
/** The whole uAPI (ioctl helpers, struct layouts and codec, VFIO/iommufd/dma-buf/UIO tables), as a namespace. */
export * as uapi from './uapi/index.ts';
/**
 * The board the kernel boots on, re-exported so `userspace/` (which sees the machine only through the kernel
 * layer, DESIGN.md's DAG) can build one for `withMachine`.
 */
export { createMachine, type Machine, type MachineConfigInput } from '../machine/index.ts';
