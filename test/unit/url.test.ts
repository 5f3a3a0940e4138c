import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { resolveOptions } from "../../src/amqp/connection.js";
import { parseUrl, redactUrl } from "../../src/amqp/url.js";
import { ConfigError } from "../../src/errors.js";

describe("parseUrl", () => {
  it("reads every part of a RabbitMQ URI", () => {
    const u = parseUrl(
      "amqp://alice:s%40cret@rabbit.local:5673/prod%2Feu?heartbeat=15&frame_max=65536&channel_max=100&connection_timeout=2500",
    );
    expect(u).toMatchObject({
      protocol: "amqp",
      host: "rabbit.local",
      port: 5673,
      username: "alice",
      password: "s@cret",
      vhost: "prod/eu",
      heartbeat: 15,
      frameMax: 65536,
      channelMax: 100,
      connectionTimeout: 2500,
    });
    expect(u.tls).toBeUndefined();
  });

  it("defaults: guest/guest, port by scheme, vhost /", () => {
    expect(parseUrl("amqp://localhost")).toMatchObject({
      username: "guest",
      password: "guest",
      port: 5672,
      vhost: "/",
    });
    expect(parseUrl("amqp://localhost/")).toMatchObject({ vhost: "/" });
    expect(parseUrl("amqp://localhost/%2F")).toMatchObject({ vhost: "/" });
    expect(parseUrl("amqps://localhost")).toMatchObject({ protocol: "amqps", port: 5671, tls: {} });
    expect(parseUrl("amqp://[::1]:5672/v")).toMatchObject({ host: "::1", vhost: "v" });
  });

  it("auth_mechanism is repeatable and checked", () => {
    expect(parseUrl("amqp://h?auth_mechanism=external&auth_mechanism=PLAIN").authMechanism).toEqual([
      "EXTERNAL",
      "PLAIN",
    ]);
    expect(() => parseUrl("amqp://h?auth_mechanism=CRAM-MD5")).toThrow(ConfigError);
  });

  it("TLS parameters read the PEM files and need amqps", () => {
    const dir = mkdtempSync(join(tmpdir(), "warren-url-"));
    writeFileSync(join(dir, "ca.pem"), "CA");
    const u = parseUrl(
      `amqps://h?cacertfile=${join(dir, "ca.pem")}&verify=verify_none&server_name_indication=rabbit`,
    );
    expect(u.tls?.ca?.toString()).toBe("CA");
    expect(u.tls?.rejectUnauthorized).toBe(false);
    expect(u.tls?.servername).toBe("rabbit");
    expect(() => parseUrl(`amqp://h?cacertfile=${join(dir, "ca.pem")}`)).toThrow(/amqps/);
    expect(() => parseUrl("amqps://h?cacertfile=/nonexistent/ca.pem")).toThrow(ConfigError);
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ["not a url", /not a valid AMQP URL/],
    ["http://h", /unsupported URL scheme/],
    ["amqp://h?heartbeat=ten", /not a whole number/],
    ["amqp://h?heartbeat=70000", /out of range/],
    ["amqp://h?bogus=1", /unknown URL parameter "bogus"/],
    ["amqp://h/a/b", /%2F/],
    ["amqp://h/%E0%A4%A", /percent-encoding/],
  ])("rejects %s with a ConfigError", (url, msg) => {
    expect(() => parseUrl(url)).toThrow(ConfigError);
    expect(() => parseUrl(url)).toThrow(msg);
  });

  it("never puts the password in an error", () => {
    const secret = "Hunter2-very-secret";
    for (const url of [
      `amqp://bob:${secret}@h?bogus=1`,
      `amqp://bob:${secret}@h?heartbeat=x`,
      `http://bob:${secret}@h`,
      `amqp://bob:${secret}@h/a/b`,
    ]) {
      let err: unknown;
      try {
        parseUrl(url);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect(String(err)).not.toContain(secret);
      expect(JSON.stringify(err)).not.toContain(secret);
      expect((err as Error).stack).not.toContain(secret);
    }
  });

  it("redactUrl masks the password only", () => {
    expect(redactUrl("amqp://bob:pw@h:5672/v")).toBe("amqp://bob:***@h:5672/v");
    expect(redactUrl("amqp://h:5672/v")).toBe("amqp://h:5672/v");
  });
});

describe("resolveOptions", () => {
  it("options override the URL", () => {
    const o = resolveOptions({ url: "amqp://u:p@h:1234/v?heartbeat=5", heartbeat: 7, vhost: "w" });
    expect(o).toMatchObject({
      host: "h",
      port: 1234,
      username: "u",
      password: "p",
      vhost: "w",
      heartbeat: 7,
    });
  });
  it("refuses a frame_max below 8192 (RabbitMQ 4.1+ would refuse it)", () => {
    expect(() => resolveOptions({ frameMax: 4096 })).toThrow(ConfigError);
    expect(resolveOptions({ frameMax: 8192 }).frameMax).toBe(8192);
  });
  it("tls: true turns TLS on with port 5671 and verification on", () => {
    const o = resolveOptions({ tls: true });
    expect(o.port).toBe(5671);
    expect(o.tls?.rejectUnauthorized).toBeUndefined(); // undefined → verified (socket default true)
  });
});
