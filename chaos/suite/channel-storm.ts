/**
 * Broker-side channel errors on demand: makes RabbitMQ close a client's channels with a
 * channel-level error the client did not cause.
 *
 * How (found by experiment on RabbitMQ 3.10): killing a channel process (`exit(Pid, kill)` or
 * `shutdown`) makes the broker close the whole *connection* with 541 INTERNAL_ERROR; exiting it
 * with an `amqp_error` reason crashes the reader (the socket is reset); sending `channel.close`
 * from the channel's writer (`rabbit_channel:send_command`) ends in a 503 connection close once the
 * client answers close-ok. What does give a channel-level close is making the broker's channel
 * process run a bad method itself: `rabbit_channel:do(Pid, #'basic.ack'{delivery_tag = 9999})`
 * takes rabbit_channel's own exception path and the client gets
 *   channel.close 406 PRECONDITION_FAILED - unknown delivery tag 9999 (class 60, method 80: basic.ack)
 * and the channel is properly closed on both sides (close-ok), the connection stays up. The client
 * never sent that ack, so it is not the caller's fault: warren counts it toward the channel's
 * restart intensity (only basic.publish, exchange.* and queue.* closes are the caller's).
 */
import { sleep } from "../../test/support/async.js";
import { type Ctl, rabbitmqctl } from "../../test/support/broker.js";

/** The delivery tag of the injected basic.ack (the broker's reply text names it). */
export const STORM_DELIVERY_TAG = 9999;

export interface BreakChannelsOptions {
  /** Only channels in confirm mode (warren's publisher channels). Default true. */
  confirmOnly?: boolean;
  /** Run the CLI through this (e.g. an extra node's ctl); default the main node's rabbitmqctl. */
  ctl?: Ctl;
}

/**
 * Makes the broker close (406, channel-level) every channel of the connections whose client
 * property `connection_name` is `connectionName`. One `rabbitmqctl eval` (about 0.3–0.5 s).
 * Resolves with the number of channels hit (0 when none is open right now).
 */
export async function breakChannelsOf(
  connectionName: string,
  opts: BreakChannelsOptions = {},
): Promise<number> {
  if (!/^[\w.:@-]+$/.test(connectionName)) throw new Error(`unsupported connection name: ${connectionName}`);
  const ctl = opts.ctl ?? ((args: string[]) => rabbitmqctl(args, { timeoutMs: 15_000 }));
  const confirmOnly = opts.confirmOnly ?? true;
  const erl = [
    `Name = <<"${connectionName}">>,`,
    // A connection still in its handshake has client_properties `none`: the guard skips it (an
    // error in a clause body would escape the try).
    "Ours = fun(C) -> try rabbit_networking:connection_info(C, [client_properties]) of",
    '  [{client_properties, Props}] when is_list(Props) -> lists:member({<<"connection_name">>, longstr, Name}, Props);',
    "  _ -> false catch _:_ -> false end end,",
    "Conns = [C || C <- rabbit_networking:connections(), Ours(C)],",
    "Hit = fun(P) -> try rabbit_channel:info(P, [connection, confirm]) of",
    "  [{connection, C}, {confirm, Confirm}] ->",
    `    lists:member(C, Conns) andalso (Confirm orelse not ${confirmOnly});`,
    "  _ -> false catch _:_ -> false end end,",
    "Targets = [P || P <- rabbit_channel:list(), Hit(P)],",
    `[rabbit_channel:do(P, {'basic.ack', ${STORM_DELIVERY_TAG}, false}) || P <- Targets],`,
    "length(Targets).",
  ].join("\n");
  const out = await ctl(["eval", erl]);
  const n = Number.parseInt(out.trim().split("\n").pop() ?? "", 10);
  if (!Number.isFinite(n)) throw new Error(`unexpected rabbitmqctl eval output: ${out.slice(0, 300)}`);
  return n;
}

export interface StormRound {
  startedAt: number;
  endedAt: number;
  /** Channels hit in this round. */
  hits: number;
}

export interface ChannelStorm {
  /** Channels the broker was made to close so far. */
  readonly closes: number;
  /** Every finished round, in order. */
  readonly history: readonly StormRound[];
  /** Evals run so far (including those that found no open channel). */
  readonly rounds: number;
  /** Eval failures (the storm goes on). */
  readonly errors: string[];
  /** Stops after the round in progress. */
  stop(): Promise<void>;
}

/**
 * Keeps making the broker close the named connection's channels, back to back (each round is one
 * rabbitmqctl eval, so about 2–3 closes a second while a channel is open), until stop().
 */
export function startChannelStorm(
  connectionName: string,
  opts: BreakChannelsOptions & { pauseMs?: number } = {},
): ChannelStorm {
  let stopped = false;
  let closes = 0;
  let rounds = 0;
  const errors: string[] = [];
  const history: StormRound[] = [];
  const loop = (async () => {
    while (!stopped) {
      const startedAt = Date.now();
      let hits = 0;
      try {
        hits = await breakChannelsOf(connectionName, opts);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
      closes += hits;
      rounds += 1;
      history.push({ startedAt, endedAt: Date.now(), hits });
      if (opts.pauseMs) await sleep(opts.pauseMs);
    }
  })();
  return {
    get closes() {
      return closes;
    },
    get rounds() {
      return rounds;
    },
    history,
    errors,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
