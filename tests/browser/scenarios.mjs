// Browser sessions (SPEC §15) in headless Chromium, through real nginx
// (nginx/browser/) in front of two tokengate replicas. Started by
// tests/e2e/browser.rs, which starts the cluster, registers the users and passes
// everything in TG_* variables; each scenario named in TG_SCENARIOS runs in
// browser contexts of its own, and a failed one does not stop the others.
// Exits 1 if any failed; screenshots go to TG_ARTIFACTS, their paths printed as
// `artifact: PATH`.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

import {
    COOKIE,
    appSees,
    assertOnSignIn,
    base32Decode,
    hotp,
    launch,
    pageText,
    postFormFrom,
    settings,
    signIn,
    signInPage,
    step,
    submit,
    submitSignIn,
} from './lib.mjs';

const config = settings();
const { base, users } = config;
const origin = new URL(base).origin;
mkdirSync(config.artifacts, { recursive: true });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function screenshot(page, name) {
    const file = path.join(config.artifacts, name);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`artifact: ${file}`);
    return file;
}

async function newPage(browser, options = {}) {
    const context = await browser.newContext(options);
    context.setDefaultTimeout(10_000);
    context.setDefaultNavigationTimeout(10_000);
    return context.newPage();
}

/// The session cookie of the page's context, or undefined.
async function sessionCookie(page) {
    const cookies = await page.context().cookies(base);
    return cookies.find((c) => c.name === COOKIE);
}

/// (a) + (h): a protected page sends the browser to sign in and back, with the
/// cookie; the app learns who the user is; userinfo; the sign-in page's
/// screenshots. (b): sign out, and the page sends the browser to sign in again.
async function signInAndOut(browser) {
    const user = users.ada;
    const page = await newPage(browser);
    // Another cookie of the site's, which the app must still get.
    await page.context().addCookies([{ name: 'probe', value: 'abc123', url: base }]);

    const target = `${base}/docs/page.html?x=1&y=two`;
    const first = await page.goto(target);
    assertOnSignIn(page, base, target, 'a protected page without a session');
    const redirect = first.request().redirectedFrom();
    assert.ok(redirect, 'the gate redirected (nginx: error_page 401 =302)');
    assert.equal((await redirect.response()).status(), 302, 'nginx answers the 401 with a 302');
    assert.equal(first.status(), 200, 'the sign-in page');
    const csp = first.headers()['content-security-policy'] ?? '';
    assert.match(csp, /default-src 'self'/, `the sign-in page's CSP: ${csp}`);
    // What a person (and a screen reader) finds on it.
    await page.getByLabel('Email', { exact: true }).waitFor();
    await page.getByLabel('Password', { exact: true }).waitFor();
    await page.getByLabel('Authentication code').waitFor();
    await page.getByRole('button', { name: 'Sign in', exact: true }).waitFor();
    assert.equal(await page.locator('script').count(), 0, 'no JavaScript on the sign-in page');
    await screenshot(page, 'sign-in.png');

    // A wrong password: 400, the page again with a message, no cookie.
    const status = await submitSignIn(page, user, { password: 'not the password' });
    assert.equal(status, 400, `wrong password: ${await pageText(page)}`);
    await page.getByRole('alert').waitFor();
    assert.equal(await sessionCookie(page), undefined, 'no cookie after a failed sign-in');
    assertOnSignIn(page, base, undefined, 'after a wrong password');

    // The right one: back on the page asked for, with the cookie.
    const ok = await submitSignIn(page, user);
    assert.equal(ok, 303, `sign-in: ${await pageText(page)}`);
    assert.equal(page.url(), target, 'back on the original URL, query included');
    await page.locator('#docs-title').waitFor();
    const cookie = await sessionCookie(page);
    assert.ok(cookie, `the ${COOKIE} cookie is set`);
    assert.equal(cookie.httpOnly, true, 'HttpOnly');
    assert.equal(cookie.secure, true, 'Secure');
    assert.equal(cookie.sameSite, 'Lax', 'SameSite=Lax');
    assert.equal(cookie.path, '/', 'Path=/');
    assert.equal(cookie.domain, new URL(base).hostname, 'host-only');
    assert.ok(cookie.value.length >= 22, `a high-entropy handle: ${cookie.value.length} chars`);
    assert.doesNotMatch(cookie.value, /^eyJ[\w-]*\.[\w-]*\.[\w-]*$/, 'not a JWT');
    const visible = await page.evaluate(() => document.cookie);
    assert.ok(!visible.includes(COOKIE), `not readable by scripts: ${visible}`);

    // The app learns who the user is (whatever the browser claims), and does
    // not get the cookie.
    await page.setExtraHTTPHeaders({
        'x-user-id': 'admin',
        'x-auth-request-user': 'admin',
        'x-auth-request-email': 'boss@example.com',
        'remote-user': 'admin',
        'x-auth-request-amr': 'pwd otp',
        'x-session-id': 'forged',
    });
    const seen = await appSees(page, base, '/app/orders?id=7');
    await page.setExtraHTTPHeaders({});
    assert.ok(seen, 'the app is reachable once signed in');
    assert.equal(seen.user_id, user.user_id, 'X-User-Id');
    assert.equal(seen.auth_request_user, user.user_id, 'X-Auth-Request-User');
    assert.equal(seen.remote_user, user.user_id, 'Remote-User');
    assert.equal(seen.auth_request_email, user.email, 'X-Auth-Request-Email');
    assert.equal(seen.remote_email, user.email, 'Remote-Email');
    assert.equal(seen.amr, 'pwd', 'X-Auth-Request-Amr');
    assert.ok(seen.session_id, 'X-Session-Id');
    assert.equal(seen.path, '/whoami/orders?id=7', 'the path as asked');
    assert.equal(seen.tokengate_cookie, 'absent', 'the session cookie stops at nginx');
    assert.equal(seen.probe_cookie, 'abc123', "the site's other cookies reach the app");

    const info = await page.goto(`${base}/oauth2/userinfo`);
    assert.equal(info.status(), 200);
    const userinfo = JSON.parse(await info.text());
    assert.equal(userinfo.user, user.user_id, `userinfo ${JSON.stringify(userinfo)}`);
    assert.equal(userinfo.email, user.email, `userinfo ${JSON.stringify(userinfo)}`);
    // (The brief named it `sid`; the server answers `session_id`.)
    assert.equal(userinfo.session_id ?? userinfo.sid, seen.session_id, `userinfo ${JSON.stringify(userinfo)}`);
    assert.deepEqual(userinfo.amr, ['pwd'], `userinfo ${JSON.stringify(userinfo)}`);

    // (b) Sign out, asking to come back to the docs page: the session is over,
    // so the docs page sends the browser to sign in.
    const docs = `${base}/docs/page.html`;
    await page.goto(`${base}/oauth2/sign_out?rd=${encodeURIComponent(docs)}`);
    await screenshot(page, 'sign-out.png');
    const out = await submit(page, 'Sign out', '/oauth2/sign_out');
    assert.equal(out, 303, `sign-out: ${await pageText(page)}`);
    assertOnSignIn(page, base, docs, 'after signing out with rd = the docs page');
    assert.equal(await sessionCookie(page), undefined, 'the cookie is cleared');
    assert.equal(await appSees(page, base), null, 'the app sends a signed-out browser to sign in');
    const noInfo = await page.goto(`${base}/oauth2/userinfo`);
    assert.equal(noInfo.status(), 401, 'userinfo without a session');

    // The old cookie, kept by someone: the session itself is over.
    const thief = await newPage(browser);
    await thief.context().addCookies([{ ...cookie }]);
    assert.equal(await appSees(thief, base), null, 'a signed-out session\'s cookie, replayed');
    await thief.context().close();

    // 320 px wide (a small phone): the sign-in page needs no sideways scrolling.
    const narrow = await newPage(browser, { viewport: { width: 320, height: 640 } });
    await narrow.goto(`${base}/oauth2/sign_in`);
    await screenshot(narrow, 'sign-in-320px.png');
    const width = await narrow.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 320, `the sign-in page is ${width} px wide at 320 px`);
    await narrow.context().close();
    await page.context().close();
}

/// (d) Several browsers of one user, and an API session: the sessions page lists
/// them; "Sign out this one" ends that one only, "Sign out everywhere" all.
async function signOutEverywhere(browser) {
    const user = users.multi;
    const [one, two, three] = [
        await newPage(browser),
        await newPage(browser),
        await newPage(browser),
    ];
    for (const page of [one, two, three]) {
        await signIn(page, base, user);
    }
    const sid = async (page) => (await appSees(page, base)).session_id;
    const [sid1, sid2, sid3] = [await sid(one), await sid(two), await sid(three)];

    await one.goto(`${base}/oauth2/sessions`);
    await screenshot(one, 'sessions.png');
    const listed = await one.locator('tr[data-sid]').evaluateAll((rows) =>
        rows.map((r) => r.getAttribute('data-sid')),
    );
    for (const [what, s] of [
        ['this browser', sid1],
        ['the second browser', sid2],
        ['the third browser', sid3],
        ['the API (Bearer) session', user.api_session_id],
    ]) {
        assert.ok(listed.includes(s), `${what}'s session ${s} is listed: ${listed}`);
    }
    const current = one.locator(`tr[data-sid="${sid1}"]`);
    assert.match(await current.innerText(), /this browser/i, 'the current session is marked');

    // "Sign out this one" on the second browser's row.
    const row = one.locator(`tr[data-sid="${sid2}"]`);
    const status = await submit(one, 'Sign out this one', '/oauth2/sessions', row);
    assert.ok([200, 303].includes(status), `sign out one: ${status} ${await pageText(one)}`);
    assert.equal(await appSees(two, base), null, 'the session signed out from the list is over');
    assert.ok(await appSees(three, base), 'the third browser is still signed in');
    assert.ok(await appSees(one, base), 'this browser is still signed in');
    const api = await fetch(`${base}/api/x`, {
        headers: { authorization: `Bearer ${user.api_access}` },
    });
    assert.equal(api.status, 200, 'the API session is still alive');

    // "Sign out everywhere".
    await one.goto(`${base}/oauth2/sessions`);
    const everywhere = await submit(one, 'Sign out everywhere', '/oauth2/sessions');
    assert.ok([200, 303].includes(everywhere), `sign out everywhere: ${everywhere}`);
    assert.equal(await appSees(three, base), null, 'the other browser is signed out');
    assert.equal(await appSees(one, base), null, 'this browser is signed out too');
    const gone = await fetch(`${base}/api/x`, {
        headers: { authorization: `Bearer ${user.api_access}` },
    });
    assert.equal(gone.status, 401, 'the API session is over too');
    for (const page of [one, two, three]) {
        await page.context().close();
    }
}

/// (e) An `rd` naming another site is not followed: the browser lands on the
/// site's own `/`. A relative one is.
async function openRedirect(browser) {
    const user = users.ada;
    for (const rd of ['https://evil.example/', '//evil.example/x', '/\\evil.example/', 'javascript:alert(1)']) {
        const page = await newPage(browser);
        await page.goto(`${base}/oauth2/sign_in?rd=${encodeURIComponent(rd)}`);
        const status = await submitSignIn(page, user);
        assert.equal(status, 303, `sign-in with rd=${rd}: ${await pageText(page)}`);
        const landed = new URL(page.url());
        assert.equal(landed.origin, origin, `rd=${rd} sent the browser to ${page.url()}`);
        assert.equal(landed.pathname, '/', `rd=${rd}: landed on ${page.url()}`);
        await page.locator('#site-title').waitFor();
        await page.context().close();
    }
    const page = await newPage(browser);
    await page.goto(`${base}/oauth2/sign_in?rd=${encodeURIComponent('/docs/page.html')}`);
    assert.equal(await submitSignIn(page, user), 303);
    assert.equal(page.url(), `${base}/docs/page.html`, 'a relative rd is followed');
    await page.context().close();
}

/// (f) Forms posted from other sites are refused, and the session survives.
async function csrf(browser) {
    const user = users.carol;
    const page = await newPage(browser);
    await signIn(page, base, user);
    const crossSite = `http://127.0.0.1:${config.elsewhere}/blank.html`;
    // Same site (localhost), another origin: SameSite=Lax sends the cookie, so
    // only Sec-Fetch-Site and the token stand in the way.
    const sameSite = `http://localhost:${config.elsewhere}/blank.html`;
    // [page, action, fields, whether the browser sends the session cookie]
    const attacks = [
        [crossSite, '/oauth2/sessions', { all: '1' }, false],
        [crossSite, '/oauth2/sign_out', {}, false],
        [sameSite, '/oauth2/sessions', { all: '1' }, true],
        [sameSite, '/oauth2/sign_out', {}, true],
        // Signing the victim in as someone else (login CSRF): the sign-in
        // form's own CSRF cookie is SameSite=Strict, never sent from elsewhere.
        [crossSite, '/oauth2/sign_in', { email: users.ada.email, password: users.ada.password }, false],
        [sameSite, '/oauth2/sign_in', { email: users.ada.email, password: users.ada.password }, false],
    ];
    const before = (await sessionCookie(page)).value;
    for (const [from, action, fields, withCookie] of attacks) {
        const what = `a form on ${from} POSTing to ${action}`;
        const attacker = await page.context().newPage();
        await attacker.goto(from);
        const { status, location } = await postFormFrom(attacker, base + action, fields);
        // With the cookie, only a 403 will do; without it (SameSite=Lax keeps
        // it off cross-site POSTs) the server cannot tell whose session it would
        // be, and may also send the browser to sign in.
        const sentToSignIn =
            status === 303 && location && signInPage(new URL(location, base).href, base);
        assert.ok(
            status === 403 || (!withCookie && sentToSignIn),
            `${what}: ${status} (Location ${location}) ${await pageText(attacker)}`,
        );
        await attacker.close();
        // Neither the session nor the browser's cookie may be touched.
        const cookie = await sessionCookie(page);
        assert.equal(cookie?.value, before, `${what}: the browser's session cookie afterwards`);
        const seen = await appSees(page, base);
        assert.equal(seen?.user_id, user.user_id, `${what}: the session afterwards`);
    }
    // Same origin, without the form's token.
    await page.goto(`${base}/docs/page.html`);
    for (const [action, body] of [
        ['/oauth2/sessions', 'all=1'],
        ['/oauth2/sign_out', ''],
        ['/oauth2/sessions', 'all=1&csrf=forged'],
    ]) {
        const status = await page.evaluate(
            async ({ action, body }) =>
                (
                    await fetch(action, {
                        method: 'POST',
                        headers: { 'content-type': 'application/x-www-form-urlencoded' },
                        body,
                        redirect: 'manual',
                    })
                ).status,
            { action, body },
        );
        assert.equal(status, 403, `same-origin POST ${action} "${body}" without a valid token`);
    }
    const seen = await appSees(page, base);
    assert.ok(seen, 'the session survived every forged form');
    assert.equal(seen.user_id, user.user_id, 'and is still the same user');
    await page.context().close();
}

/// (g) TOTP: enrol, then sign in with a code computed here; a location that
/// demands the second factor lets such a session in and sends a password-only
/// one to sign in.
async function totp(browser) {
    const user = users.tess;
    const page = await newPage(browser);
    await signIn(page, base, user);
    await page.goto(`${base}/oauth2/totp`);
    // Turning it on asks for the password again: a wrong one changes nothing.
    await page.getByLabel('Your password').fill('not the password');
    assert.equal(await submit(page, 'Set up', '/oauth2/totp'), 200, await pageText(page));
    assert.match(await page.getByRole('alert').innerText(), /Wrong password/);
    await page.getByLabel('Your password').fill(user.password);
    assert.equal(await submit(page, 'Set up', '/oauth2/totp'), 200, await pageText(page));
    await page.locator('#totp-qr svg').waitFor();
    const secret = (await page.locator('code#totp-secret').innerText()).trim();
    const key = base32Decode(secret);
    assert.ok(key.length >= 16, `a secret of ${key.length} bytes (RFC 4226: at least 16)`);
    await screenshot(page, 'totp-enrol.png');
    const enrolledAt = step();
    await page.getByLabel('Code from your app').fill(hotp(key, enrolledAt));
    assert.equal(await submit(page, 'Turn on', '/oauth2/totp'), 200, await pageText(page));
    const recovery = await page.locator('#recovery-codes li').allInnerTexts();
    assert.equal(recovery.length, 10, `10 recovery codes: ${recovery}`);
    assert.equal(new Set(recovery).size, 10, 'all different');
    await screenshot(page, 'totp-recovery-codes.png');

    // Sign out; the password alone no longer signs in; the message does not say
    // which part was wrong.
    await page.goto(`${base}/oauth2/sign_out`);
    assert.equal(await submit(page, 'Sign out', '/oauth2/sign_out'), 303);
    const target = `${base}/app/admin/report`;
    await page.goto(target);
    assertOnSignIn(page, base, target, 'the second-factor location without a session');
    const messages = [];
    for (const [what, options] of [
        ['no code', {}],
        ['a wrong code', { code: hotp(key, enrolledAt) === '000000' ? '111111' : '000000' }],
        ['a wrong password with a right code', { password: 'wrong password', code: hotp(key, enrolledAt + 1) }],
    ]) {
        const status = await submitSignIn(page, user, options);
        assert.equal(status, 400, `${what}: ${await pageText(page)}`);
        messages.push(await page.getByRole('alert').innerText());
    }
    assert.equal(new Set(messages).size, 1, `one message whatever was wrong: ${JSON.stringify(messages)}`);
    assert.equal(await sessionCookie(page), undefined, 'no session without the code');

    // A code not used yet: the next step's if this one's confirmed the
    // enrolment (a code is single-use), else this one's.
    const fresh = step() > enrolledAt ? step() : enrolledAt + 1;
    const code = hotp(key, fresh);
    assert.equal(await submitSignIn(page, user, { code }), 303, await pageText(page));
    assert.equal(page.url(), target, 'back at the second-factor location');
    const seen = JSON.parse(await page.locator('body').innerText());
    assert.equal(seen.user_id, user.user_id);
    assert.equal(seen.amr, 'pwd otp', 'X-Auth-Request-Amr');
    const info = JSON.parse(await (await page.goto(`${base}/oauth2/userinfo`)).text());
    assert.deepEqual([...info.amr].sort(), ['otp', 'pwd'], `userinfo amr: ${JSON.stringify(info)}`);

    // The same code again, in another browser: single-use.
    const replay = await newPage(browser);
    await replay.goto(`${base}/oauth2/sign_in`);
    assert.equal(await submitSignIn(replay, user, { code }), 400, `a used code, again: ${await pageText(replay)}`);
    // A recovery code instead.
    assert.equal(await submitSignIn(replay, user, { code: recovery[0] }), 303, `a recovery code: ${await pageText(replay)}`);
    await replay.context().close();

    // Another user's password-only session: fine at /app/, refused at the
    // second-factor location (the gate's 403, nginx's page saying why).
    const plain = await newPage(browser);
    await signIn(plain, base, users.ada);
    const asPlain = await appSees(plain, base);
    assert.equal(asPlain.amr, 'pwd');
    const refused = await plain.goto(target);
    assert.equal(refused.status(), 403, `a password-only session at ${target}: ${await pageText(plain)}`);
    await plain.getByRole('heading', { name: 'Two-factor sign-in needed' }).waitFor();
    await plain.context().close();
    await page.context().close();
}

/// (c) auth.auto_logout ends a session nobody used; activity keeps it; and
/// auth.max_session ends it however active it is.
async function idle(browser) {
    const { auto_logout_ms: idleMs, touch_ms: touchMs } = config.timeouts;
    const page = await newPage(browser);
    await signIn(page, base, users.idle);
    // Used every idleMs / 10 (plus the request's own time, which a busy
    // machine stretches) for one and a half idleMs: alive throughout.
    const until = Date.now() + 1.5 * idleMs;
    while (Date.now() < until) {
        assert.ok(await appSees(page, base), 'an active session stays signed in');
        await sleep(idleMs / 10);
    }
    // Then left alone past auto_logout (and the idle clock's write interval).
    await sleep(idleMs + touchMs + 500);
    assert.equal(await appSees(page, base), null, 'an idle session is over');
    await page.context().close();
}

async function maxSession(browser) {
    const { max_session_ms: maxMs } = config.timeouts;
    const page = await newPage(browser);
    // The session starts during the sign-in POST: between these two instants.
    const before = Date.now();
    await signIn(page, base, users.max);
    const after = Date.now();
    // Active every 300 ms, so only the absolute limit can end it.
    for (;;) {
        const seen = await appSees(page, base);
        const now = Date.now();
        if (!seen) {
            assert.ok(now - before >= maxMs - 1000, `ended ${now - before} ms after sign-in, before max_session ${maxMs} ms`);
            break;
        }
        assert.ok(now - after < maxMs + 3000, `still signed in ${now - after} ms after sign-in (max_session ${maxMs} ms)`);
        await sleep(300);
    }
    await page.context().close();
}

const SCENARIOS = {
    sign_in_and_out: signInAndOut,
    sign_out_everywhere: signOutEverywhere,
    open_redirect: openRedirect,
    csrf,
    totp,
    idle,
    max_session: maxSession,
};

const browser = await launch();
const results = await Promise.all(
    config.scenarios.map(async (name) => {
        const scenario = SCENARIOS[name];
        assert.ok(scenario, `no scenario ${name}`);
        const started = Date.now();
        try {
            await scenario(browser);
            console.log(`ok ${name} (${Date.now() - started} ms)`);
            return true;
        } catch (error) {
            console.log(`FAILED ${name} (${Date.now() - started} ms): ${error.stack ?? error}`);
            return false;
        }
    }),
);
await browser.close();
const failed = results.filter((ok) => !ok).length;
console.log(`browser scenarios: ${results.length - failed} ok, ${failed} failed`);
process.exit(failed ? 1 : 0);
