/** The Toxiproxy-compatible server (chaos/toxiproxy) for a test file, and a client of its API. */
import { Toxiproxy } from "toxiproxy-node-client";
import { afterAll, beforeAll } from "vitest";
import { startToxiproxy, type ToxiproxyServer } from "../../chaos/toxiproxy/server.js";

export interface UseToxiproxy {
  /** The server (its `url`), listening on an ephemeral port of 127.0.0.1 from beforeAll to afterAll. */
  readonly server: ToxiproxyServer;
  /** toxiproxy-node-client pointed at it. */
  readonly toxiproxy: Toxiproxy;
}

/** Starts the server in beforeAll and closes it in afterAll; call at the top of a file or describe. */
export function useToxiproxy(): UseToxiproxy {
  let server: ToxiproxyServer | undefined;
  let toxiproxy: Toxiproxy | undefined;
  beforeAll(async () => {
    server = await startToxiproxy({ host: "127.0.0.1", port: 0 });
    toxiproxy = new Toxiproxy(server.url);
  });
  afterAll(async () => {
    await server?.close();
  });
  const need = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("the toxiproxy server is started in beforeAll");
    return v;
  };
  return {
    get server() {
      return need(server);
    },
    get toxiproxy() {
      return need(toxiproxy);
    },
  };
}
