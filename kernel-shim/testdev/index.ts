import type { Kernel } from '../kernel.ts';

/**
 * Registers the test-only character device `/dev/dmasim-test` (present only when `KernelOptions.testDevice`
 * is set). Placeholder: the ioctls land with the uAPI codec.
 */
export function registerTestDevice(_kernel: Kernel): void {}
