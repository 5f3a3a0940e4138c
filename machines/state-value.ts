/** The innermost state name of a machine's state value (`{ open: "running" }` → "running"). */
export function leafName(value: unknown): string {
  let v = value;
  while (v !== null && typeof v === "object") v = Object.values(v as Record<string, unknown>)[0];
  return String(v);
}
