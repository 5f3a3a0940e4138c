/**
 * warren's supervised client with one connection for everything (`connections: "single"`), driven
 * as warren-client is: the ratio warren-client ÷ warren-single is the cost (or gain) of putting
 * publishers and consumers on separate connections, the default.
 */
import { type ClientOptions, connect } from "../../src/index.js";
import type { OpenOptions } from "./types.js";
import { WarrenClientClient } from "./warren-client.js";

export class WarrenSingleClient extends WarrenClientClient {
  override readonly name = "warren-single";

  override async open(o: OpenOptions): Promise<void> {
    const opts: ClientOptions = { url: o.url, connections: "single" };
    if (o.frameMax !== undefined) opts.frameMax = o.frameMax;
    this.client = connect(opts);
    await this.client.ready();
  }
}
