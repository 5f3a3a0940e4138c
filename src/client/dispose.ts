/**
 * The key of `[Symbol.asyncDispose]()`, which `await using` calls at the end of its block (Client,
 * Publisher, Consumer, RpcClient, RpcServer and MessageStream have it). Node has had the symbol
 * since 20.4 (as `Symbol.for("nodejs.asyncDispose")`); on an older Node 20 warren keys the method
 * with that same registered symbol, so a polyfill `Symbol.asyncDispose ??= Symbol.for("nodejs.asyncDispose")`
 * makes `await using` work there too.
 */
export const asyncDispose: typeof Symbol.asyncDispose =
  Symbol.asyncDispose ?? (Symbol.for("nodejs.asyncDispose") as typeof Symbol.asyncDispose);
