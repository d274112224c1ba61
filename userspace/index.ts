/** User-space helpers written against the kernel's process API: {@link withMachine} for tests, the VFIO driver library. */
export { withMachine, LeakError, type MachineSession, type WithMachineOptions } from './with-machine.ts';
export { VfioPciDevice, VfioSetupError, bindVfioPci, fullBdf, iommuGroup, physAddr, type AllocDmaOptions, type DmaBuffer, type IovaRange, type RegionInfo, type VfioOpenOptions } from './vfio.ts';
export { readText, writeText } from './files.ts';
