/**
 * VFIO (`drivers/vfio/`): the core with its container and group nodes, the type1 IOMMU driver, the
 * `vfio-pci` driver binding, and the contract with bus drivers.
 */
export { MISC_MAJOR, VFIO_GROUP_MAJOR, VFIO_MINOR, vfioGroups, vfioInit, vfioRegisterGroupDev, vfioUnregisterGroupDev } from './core.ts';
export { VFIO_IOMMU_DRIVERS, VfioContainer, vfioContainerFromFile, type VfioIommuData, type VfioIommuDriver } from './container.ts';
export { VfioGroup, type VfioGroupType, vfioDeviceFromFile, vfioPciMatch, vfioRevokeDevice } from './group.ts';
export { DMA_ENTRY_LIMIT_DEFAULT, Type1Iommu, dmaEntryLimit, type1Driver } from './type1.ts';
export { vfioPciDriver } from './pci-driver.ts';
export { isNoiommuGroup, noiommuDriver, noiommuEnabled, processLockedFrames, watchProcessIsolation } from './noiommu.ts';
export type { VfioDevice, VfioDeviceOps } from './device.ts';
export { IsolationObserver, containerPinnedFrames, ownerPinnedFrames, watchContainerIsolation, watchOwnerIsolation, type IsolationViolation } from './isolation.ts';
