import { apexDirect } from './apex-direct.ts';
import { demo } from './demo.ts';
import { eduDirect } from './edu-direct.ts';
import { noiommuApex } from './noiommu-apex.ts';
import type { Scenario } from './scenario.ts';
import { uioApex } from './uio-apex.ts';
import { uioEdu } from './uio-edu.ts';
import { vfioApex } from './vfio-apex.ts';

export type { Printer, Scenario, ScenarioContext } from './scenario.ts';

/** Every registered scenario by name, in the order `dmasim run --help` lists them. */
export const SCENARIOS: ReadonlyMap<string, Scenario> = new Map<string, Scenario>([
  ['demo', demo],
  ['edu-direct', eduDirect],
  ['apex-direct', apexDirect],
  ['uio-edu', uioEdu],
  ['uio-apex', uioApex],
  ['vfio-apex', vfioApex],
  ['noiommu-apex', noiommuApex],
]);
