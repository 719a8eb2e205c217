// oidc-provider.mjs serves a local OAuth 2.0 / OpenID Connect authorization
// server (the npm package oidc-provider) for the OAuth connection tests, on
// 127.0.0.1 only. scripts/test-services.sh starts it with:
//
//   OIDC_PROVIDER_MODULE  path of oidc-provider's package directory
//   OIDC_PORT             the port to listen on
//   OIDC_CLIENT_ID        Apiary's client id
//   OIDC_CLIENT_SECRET    Apiary's client secret
//
// What it promises the tests:
//   - one confidential client (client_secret_basic) whose redirect URIs are
//     http://127.0.0.1:<any port>/v1/oauth/callback/<provider>;
//   - authorization code with PKCE required for every client, S256 only;
//   - refresh tokens issued with every code and rotated on each use; using a
//     rotated (consumed) refresh token again revokes the whole grant
//     (oidc-provider's own behaviour when rotateRefreshToken is true);
//   - RFC 7009 revocation and RFC 7662 introspection enabled;
//   - the dev interactions: an HTML login form (any login, any password)
//     and a consent form, which the Go tests submit with an http.Client;
//   - the issuer in the authorization response (RFC 9207).
// State lives in memory; it is gone when the process stops.
const { default: Provider } = await import(`${process.env.OIDC_PROVIDER_MODULE}/lib/index.js`);

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;
const clientId = process.env.OIDC_CLIENT_ID;
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!port || !clientId || !clientSecret) {
  console.error("oidc-provider.mjs: OIDC_PORT, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are required");
  process.exit(2);
}

const redirectPattern = /^http:\/\/127\.0\.0\.1:\d{1,5}\/v1\/oauth\/callback\/[a-z0-9_-]+$/;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    // A placeholder: redirectUriAllowed below accepts the pattern.
    redirect_uris: ["http://127.0.0.1:1/v1/oauth/callback/oidc"],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  rotateRefreshToken: true,
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  features: {
    devInteractions: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  ttl: { AccessToken: 3600, RefreshToken: 86400, Grant: 86400, Session: 3600, Interaction: 600 },
  cookies: { keys: ["apiary-test-services-only"] },
});

// Loopback redirect URIs on any port (the test server's port is chosen at
// random), for the one path shape Apiary uses.
const allowed = provider.Client.prototype.redirectUriAllowed;
provider.Client.prototype.redirectUriAllowed = function (uri) {
  return redirectPattern.test(uri) || allowed.call(this, uri);
};

const server = provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
