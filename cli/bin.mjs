#!/usr/bin/env node
// The dmasim command: the sources are TypeScript, run through tsx's loader.
import { register } from 'tsx/esm/api';

register();
const { main, processIo } = await import('./main.ts');
process.exitCode = await main(process.argv.slice(2), processIo());
