/**
 * A private RabbitMQ node that logs in with OAuth 2.0 tokens (rabbitmq_auth_backend_oauth2 first,
 * the internal database second, so guest still works for the test's own admin), and HS256 JWTs
 * signed for it with node:crypto.
 *
 * RabbitMQ 3.10's plugin takes a symmetric key as a JWK in advanced.config
 * (`key_config.signing_keys`, `{map, #{kty => oct, k => base64url}}`: "k", not "value", for an oct key); a token without a `kid`
 * header is checked with `default_key`. The token is the password; the user name may be empty (the
 * plugin names the user after the token's `sub`).
 */
import { createHmac, randomBytes } from "node:crypto";
import { type ExtraNode, findFreePorts, startExtraNode } from "./extra-node.js";

/** The resource server id: the tokens' `aud` and the prefix of their scopes. */
export const RESOURCE_SERVER = "warren";
const KEY_ID = "warren-test-key";
/** Full access to every vhost and resource. */
export const FULL_SCOPE = "warren.configure:*/* warren.write:*/* warren.read:*/*";

export interface OauthNode extends ExtraNode {
  /** The node's symmetric signing key (raw bytes). */
  key: Buffer;
  /** amqp://127.0.0.1:<port>/ without credentials. */
  bareUrl: string;
}

/** Starts the node; stop() it in afterAll. */
export async function startOauthNode(name = "warren-oauth"): Promise<OauthNode> {
  const [amqpPort, distPort] = await findFreePorts(2);
  const key = randomBytes(32);
  const node = await startExtraNode({
    name,
    amqpPort: amqpPort as number,
    distPort: distPort as number,
    plugins: ["rabbitmq_auth_backend_oauth2"],
    config: [
      "auth_backends.1 = rabbit_auth_backend_oauth2",
      "auth_backends.2 = internal",
      `auth_oauth2.resource_server_id = ${RESOURCE_SERVER}`,
      "loopback_users = none",
      "",
    ].join("\n"),
    advancedConfig: `[{rabbitmq_auth_backend_oauth2, [
  {resource_server_id, <<"${RESOURCE_SERVER}">>},
  {key_config, [
    {default_key, <<"${KEY_ID}">>},
    {signing_keys, #{<<"${KEY_ID}">> => {map, #{<<"kty">> => <<"oct">>, <<"alg">> => <<"HS256">>, <<"k">> => <<"${key.toString("base64url")}">>}}}}
  ]}
]}].
`,
  });
  return { ...node, key, bareUrl: `amqp://127.0.0.1:${node.amqpPort}/` };
}

export interface TokenClaims {
  /** Seconds from now until `exp` (default 10). */
  ttlSeconds?: number;
  /** Default "warren-test". */
  sub?: string;
  /** Default FULL_SCOPE. */
  scope?: string;
}

/** An HS256 JWT for the node, and its expiry (ms since the epoch, whole seconds as `exp` has). */
export function signToken(key: Buffer, claims: TokenClaims = {}): { token: string; expiresAt: number } {
  const now = Math.floor(Date.now() / 1000);
  const exp = now + (claims.ttlSeconds ?? 10);
  const header = { alg: "HS256", typ: "JWT" };
  const payload = {
    sub: claims.sub ?? "warren-test",
    aud: RESOURCE_SERVER,
    scope: claims.scope ?? FULL_SCOPE,
    iat: now,
    exp,
    jti: randomBytes(8).toString("hex"),
  };
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const body = `${enc(header)}.${enc(payload)}`;
  const sig = createHmac("sha256", key).update(body).digest("base64url");
  return { token: `${body}.${sig}`, expiresAt: exp * 1000 };
}
