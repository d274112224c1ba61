/**
 * The IOMMU's boot parameters, parsed from the kernel command line as Linux parses them:
 * - `intel_iommu=on|off` (`intel_iommu_setup`; also `strict`, the deprecated spelling of `iommu.strict=1`);
 * - `iommu=pt|nopt` (x86 `iommu_setup`) and `iommu.passthrough=0|1` (`iommu_set_def_domain_type`):
 *   default domains pass through (identity) instead of translating;
 * - `iommu.strict=0|1` (`iommu_dma_setup`): DMA-API default domains invalidate the IOTLB on every unmap
 *   (strict), or batch invalidations in a flush queue (lazy).
 *
 * Linux on x86 builds with `CONFIG_IOMMU_DEFAULT_DMA_LAZY` for Intel and AMD; dmasim defaults to strict
 * (the safe choice its users test against), and lazy is one option away.
 */
export interface IommuParams {
  /** `intel_iommu=off` was given. */
  readonly disabled: boolean;
  /** `intel_iommu=on` was given (Linux then logs "DMAR: IOMMU enabled"). */
  readonly forcedOn: boolean;
  readonly passthrough: boolean;
  /** The pass-through choice came from the command line (the log says so). */
  readonly passthroughFromCmdline: boolean;
  readonly strict: boolean;
  readonly strictFromCmdline: boolean;
}

function bool(v: string): boolean | undefined {
  // kstrtobool: 1/y/Y/on -> true, 0/n/N/off -> false.
  if (/^(1|y|Y|on)/.test(v)) return true;
  if (/^(0|n|N|of)/.test(v)) return false;
  return undefined;
}

/** Parses the IOMMU parameters out of `cmdline` (later words win, as `parse_args` applies them in order). */
export function parseIommuParams(cmdline: string): IommuParams {
  let disabled = false;
  let forcedOn = false;
  let passthrough = false;
  let ptCmd = false;
  let strict = true;
  let strictCmd = false;
  for (const word of cmdline.split(/\s+/)) {
    const eq = word.indexOf('=');
    if (eq < 0) continue;
    const key = word.slice(0, eq);
    const val = word.slice(eq + 1);
    if (key === 'intel_iommu') {
      for (const opt of val.split(',')) {
        if (opt === 'on') {
          disabled = false;
          forcedOn = true;
        } else if (opt === 'off') disabled = true;
        else if (opt === 'strict') {
          strict = true;
          strictCmd = true;
        }
      }
    } else if (key === 'iommu') {
      for (const opt of val.split(',')) {
        if (opt === 'pt') {
          passthrough = true;
          ptCmd = true;
        } else if (opt === 'nopt') {
          passthrough = false;
          ptCmd = true;
        }
      }
    } else if (key === 'iommu.passthrough') {
      const b = bool(val);
      if (b !== undefined) {
        passthrough = b;
        ptCmd = true;
      }
    } else if (key === 'iommu.strict') {
      const b = bool(val);
      if (b !== undefined) {
        strict = b;
        strictCmd = true;
      }
    }
  }
  return { disabled, forcedOn, passthrough, passthroughFromCmdline: ptCmd, strict, strictFromCmdline: strictCmd };
}
