/**
 * A fake of the connection as the credential refresher sees it (SecretTarget): it records the
 * secrets sent and answers update-secret-ok on a microtask, or stays silent, as the test says.
 */
import type { SecretTarget } from "../../../src/client/credential-refresh.js";
import { ConnectionClosedError } from "../../../src/errors.js";

export class FakeSecretTarget implements SecretTarget {
  isOpen = true;
  /** Every secret sent with updateSecret(), in order. */
  readonly secrets: string[] = [];
  /** Answer update-secret-ok (true) or never answer (false). */
  answers = true;
  private readonly listeners = new Set<() => void>();

  updateSecret(secret: string, _reason: string): void {
    if (!this.isOpen) throw new ConnectionClosedError("the connection is closed");
    this.secrets.push(secret);
    if (this.answers) queueMicrotask(() => this.ok());
  }

  /** The broker's update-secret-ok. */
  ok(): void {
    for (const fn of [...this.listeners]) fn();
  }

  on(_event: "secretUpdated", fn: () => void): this {
    this.listeners.add(fn);
    return this;
  }

  off(_event: "secretUpdated", fn: () => void): this {
    this.listeners.delete(fn);
    return this;
  }

  /** Listeners still attached (a finished wait leaves none). */
  get listening(): number {
    return this.listeners.size;
  }
}
