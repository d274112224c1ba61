/**
 * The I/O page-table format library (Linux io-pgtable style): a format-independent ops table, the gather
 * record, `bigint` entry points, and the VT-d second-level format with its entry layout.
 */
export * from './types.ts';
export * from './wide.ts';
export * from './vtd-sl-entry.ts';
export * from './vtd-sl.ts';
