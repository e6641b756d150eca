// A real OpenID provider for the relay-tests scenarios: panva's
// oidc-provider (the version pinned by package-lock.json beside this file),
// run by the Rust harness (tests/src/oidc.rs) as its own process on
// 127.0.0.1, its issuer http://127.0.0.1:PORT.
//
//     node tests/oidc/provider.mjs CONFIG.json
//
// CONFIG.json, written by the harness:
//   port              0: any free port; a fixed one when restarting (key rotation)
//   keys_file         the private JWKS ({"keys": [...]}): made (one RS256 key)
//                     when absent, replaced by a fresh key when `rotate` is true
//   rotate            see keys_file
//   users             login -> {email, preferred_username, groups, password}
//   clients           relay-cli (public, native) and ci-runner (confidential),
//                     oidc-provider client metadata plus, for a workload
//                     client, `claims` (put in its JWT access tokens; `sub`
//                     replaces the client id) and `jwt_typ` (the JWT header's typ)
//   id_token_ttl      seconds (default 600)
//   access_token_ttl  seconds, JWT access tokens of client_credentials (default 300)
//   device_interval   seconds, the `interval` of device authorization
//                     responses (oidc-provider sends none: RFC 8628 then
//                     means 5 s; default 1)
//
// Once it listens it prints exactly one line on stdout,
// `oidc-provider listening on http://127.0.0.1:PORT`; everything else
// (oidc-provider's notices, errors) goes to stderr.
//
// Sign-in goes through this file's own interaction pages (plain HTML
// forms; oidc-provider's devInteractions take any login without a
// password): GET /interaction/UID shows the login form (fields `login`,
// `password`, posted to /interaction/UID/login) or the consent form (posted
// to /interaction/UID/confirm). A wrong login or password shows the login
// form again with `<p id="error">Invalid login or password.</p>`.
//
// Development only: an http issuer on loopback, users in memory, the
// memory adapter. Cookie keys are random for each start.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

// stdout carries the ready line alone: oidc-provider's notices
// (console.info) go to stderr.
console.info = (...args) => console.error(...args);

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(fs.readFileSync(configPath, 'utf8'));
const users = config.users ?? {};
const clients = config.clients ?? [];
const idTokenTtl = config.id_token_ttl ?? 600;
const accessTokenTtl = config.access_token_ttl ?? 300;
const deviceInterval = config.device_interval ?? 1;

// The signing keys: a fresh RS256 key when there is none yet or a rotation
// was asked for (the old key then leaves the JWKS).
function freshKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: crypto.randomBytes(12).toString('base64url'),
    use: 'sig',
    alg: 'RS256',
  };
}

let jwks;
if (config.rotate || !fs.existsSync(config.keys_file)) {
  jwks = { keys: [freshKey()] };
  fs.writeFileSync(config.keys_file, JSON.stringify(jwks), { mode: 0o600 });
} else {
  jwks = JSON.parse(fs.readFileSync(config.keys_file, 'utf8'));
}

function escapeHtml(value) {
  return String(value)
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function passwordMatches(given, expected) {
  const a = crypto.createHash('sha256').update(String(given)).digest();
  const b = crypto.createHash('sha256').update(String(expected)).digest();
  return crypto.timingSafeEqual(a, b);
}

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`);
}

function loginPage(res, uid, params, error) {
  const hint = params.login_hint ? ` value="${escapeHtml(params.login_hint)}"` : '';
  const message = error ? `<p id="error">${escapeHtml(error)}</p>\n` : '';
  page(res, 200, 'Sign-in', `${message}<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">
  <input type="text" name="login" required autofocus${hint}>
  <input type="password" name="password" required>
  <button type="submit">Sign-in</button>
</form>`);
}

function consentPage(res, uid, details) {
  const scopes = details.prompt.details.missingOIDCScope ?? [];
  page(res, 200, 'Authorize', `<p>${escapeHtml(details.params.client_id)} asks for: ${escapeHtml(scopes.join(' '))}</p>
<form id="consent" method="post" action="/interaction/${escapeHtml(uid)}/confirm">
  <button type="submit">Continue</button>
</form>
<form id="abort" method="post" action="/interaction/${escapeHtml(uid)}/abort">
  <button type="submit">Cancel</button>
</form>`);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) {
      throw new Error('form too large');
    }
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// GET /interaction/UID, POST /interaction/UID/{login,confirm,abort}.
async function interaction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    throw new Error('interaction mismatch');
  }
  const { prompt, params, session, grantId } = details;

  if (req.method === 'GET' && !action) {
    switch (prompt.name) {
      case 'login':
        return loginPage(res, uid, params);
      case 'consent':
        return consentPage(res, uid, details);
      default:
        return page(res, 501, 'Not implemented', `<p>prompt ${escapeHtml(prompt.name)}</p>`);
    }
  }
  if (req.method !== 'POST') {
    return page(res, 405, 'Method not allowed', '');
  }

  const form = await readForm(req);
  switch (action) {
    case 'login': {
      if (prompt.name !== 'login') {
        return page(res, 400, 'Bad request', '<p>not at the login prompt</p>');
      }
      const login = form.get('login') ?? '';
      const user = Object.hasOwn(users, login) ? users[login] : undefined;
      if (!user || !passwordMatches(form.get('password') ?? '', user.password)) {
        return loginPage(res, uid, params, 'Invalid login or password.');
      }
      return provider.interactionFinished(req, res, {
        login: { accountId: login },
      }, { mergeWithLastSubmission: false });
    }
    case 'confirm': {
      if (prompt.name !== 'consent') {
        return page(res, 400, 'Bad request', '<p>not at the consent prompt</p>');
      }
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) {
        grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      }
      if (missing.missingOIDCClaims) {
        grant.addOIDCClaims(missing.missingOIDCClaims);
      }
      if (missing.missingResourceScopes) {
        for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scope.join(' '));
        }
      }
      return provider.interactionFinished(req, res, {
        consent: { grantId: await grant.save() },
      }, { mergeWithLastSubmission: true });
    }
    case 'abort':
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    default:
      return page(res, 404, 'Not found', '');
  }
}

function configuration() {
  const workload = new Map(
    clients.filter((c) => c.claims).map((c) => [c.client_id, c]),
  );
  return {
    clients: clients.map(({ claims, jwt_typ: typ, ...metadata }) => metadata),
    jwks,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    // The claims of the granted scopes go in the ID token itself, as
    // Entra ID does (oidc-provider's default keeps them for userinfo when
    // an access token for userinfo is issued too).
    conformIdTokenClaims: false,
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
      groups: ['groups'],
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    async findAccount(_ctx, id) {
      if (!Object.hasOwn(users, id)) {
        return undefined;
      }
      const user = users[id];
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: user.email,
            email_verified: true,
            preferred_username: user.preferred_username ?? id,
            groups: user.groups ?? [],
          };
        },
      };
    },
    // The code flow only (discovery would otherwise list implicit).
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Any resource indicator names an audience: a JWT access token for it.
        async getResourceServerInfo(_ctx, resourceIndicator) {
          return {
            scope: 'relay',
            audience: resourceIndicator,
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // A workload client's claims, as GitHub Actions puts repository, ref,
    // workflow in its ID tokens.
    async extraTokenClaims(_ctx, token) {
      const client = workload.get(token.clientId);
      if (!client) {
        return undefined;
      }
      const { sub, ...claims } = client.claims;
      return claims;
    },
    formats: {
      customizers: {
        async jwt(_ctx, token, jwt) {
          const client = workload.get(token.clientId);
          if (!client) {
            return;
          }
          if (typeof client.claims.sub === 'string') {
            jwt.payload.sub = client.claims.sub;
          }
          if (client.jwt_typ) {
            jwt.header = { ...jwt.header, typ: client.jwt_typ };
          }
        },
      },
    },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? 3600,
      AuthorizationCode: 60,
      ClientCredentials: accessTokenTtl,
      DeviceCode: 600,
      Grant: 3600,
      IdToken: idTokenTtl,
      Interaction: 600,
      RefreshToken: 3600,
      Session: 3600,
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Error</title></head>
<body>
<h1>Error</h1>
${Object.entries(out).map(([k, v]) => `<p class="${escapeHtml(k)}">${escapeHtml(k)}: ${escapeHtml(v)}</p>`).join('\n')}
</body>
</html>
`;
    },
  };
}

let provider;
let callback;

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const match = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?$/.exec(url.pathname);
  if (!match) {
    return callback(req, res);
  }
  try {
    await interaction(provider, req, res, match[1], match[2]);
  } catch (err) {
    console.error(`interaction ${req.method} ${url.pathname}: ${err}`);
    if (!res.headersSent) {
      page(res, 400, 'Error', `<p class="error">${escapeHtml(err.name)}: ${escapeHtml(err.message)}</p>`);
    }
  }
  return undefined;
});

server.on('error', (err) => {
  console.error(`oidc-provider: ${err.message}`);
  process.exit(1);
});

server.listen({ port: config.port ?? 0, host: '127.0.0.1' }, () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  provider = new Provider(issuer, configuration());
  // oidc-provider sends no `interval` (RFC 8628 then means 5 s).
  provider.on('device_authorization.success', (_ctx, body) => {
    body.interval = deviceInterval;
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'jwks.error']) {
    provider.on(event, (_ctx, err) => console.error(`${event}: ${err.name}: ${err.message} ${err.error_description ?? ''}`));
  }
  callback = provider.callback();
  console.log(`oidc-provider listening on ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
