/** warren's version: announced to the broker (client properties) and named by its traces. */
export const VERSION = "0.1.0";
