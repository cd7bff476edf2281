// The daemon's client-facing surface: method map, types, error codes, socket client.
// Imports nothing that loads a stage package or SQLite (the CLI depends on that).
export type * from './types.js'
