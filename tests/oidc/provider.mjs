// A real OpenID provider for PreRead's OpenID Connect tests: panva's oidc-provider (OpenID
// Certified), pinned in package.json + package-lock.json beside this file and installed by
// `./run setup` (npm ci). Started by tests/oidc/conftest.py as
//
//   node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG.json: {"providers": [{"name": "main"}, {"name": "other"}],
//               "clients": [<client metadata>, ...],   registered at every provider
//               "accounts": "/path/accounts.json"}     re-read at every look-up, so a test
//                                                      can change a person's claims
// accounts.json: {"<login>": {<claims>}, ...}; the login typed into the provider's
// development sign-in form (devInteractions: any password) is the account id and `sub`.
//
// Each provider listens on 127.0.0.1 at a free port (issuer http://127.0.0.1:<port>); all share
// one RSA signing key, so a token of one verifies with the other's keys and only its issuer
// tells them apart. Prints one JSON line per provider ({"name", "issuer"}), then "ready".
// Exits when its standard input closes (the test process ended).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function accounts() {
  return JSON.parse(readFileSync(config.accounts, 'utf8'));
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'preread-test-rs256', alg: 'RS256', use: 'sig' };
const cookieKeys = [randomBytes(32).toString('hex')];

async function findAccount(_ctx, id) {
  const claims = accounts()[id];
  if (claims === undefined) {
    return undefined;
  }
  return {
    accountId: id,
    async claims() {
      return { ...claims, sub: id };
    },
  };
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server.address().port));
  });
}

for (const spec of config.providers) {
  const server = createServer();
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: config.clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: cookieKeys },
    findAccount,
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username', 'hospital', 'groups'],
      email: ['email', 'email_verified'],
    },
    // the scopes' claims in the ID token itself (the default puts them only in userinfo when
    // an access token is issued too); hospitals' providers put group claims there
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    responseTypes: ['code'],
    features: { devInteractions: { enabled: true } },
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ name: spec.name, issuer }));
}
console.log('ready');

process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
