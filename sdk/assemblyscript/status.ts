// Status codes (ABI §3.1) and what the last host call said, in a module of their own so that
// index.ts (which re-exports them) and fs.ts both read them without importing each other.

export namespace Status {
  export const OK: i32 = 0;
  export const NOT_FOUND: i32 = -1;
  export const DENIED: i32 = -2;
  export const INVALID: i32 = -3;
  export const QUOTA: i32 = -4;
  export const UNAVAILABLE: i32 = -5;
  export const TOO_LARGE: i32 = -6;
}

/** The status of the last host call that answered null or false (0 when it succeeded). */
export let lastStatus: i32 = 0;

/** The host's message when a §3.3 call (http, sql, redis, vector search) or an `fs` call
 *  answered null. */
export let lastError: string = "";
