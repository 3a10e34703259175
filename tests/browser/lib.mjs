// What the browser scenarios share: Chromium from Debian, driven by
// playwright-core; the sign-in form as a person fills it; TOTP codes (RFC 6238)
// computed here, as the user's authenticator app would.

import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import assert from 'node:assert/strict';

const here = path.dirname(fileURLToPath(import.meta.url));

// playwright-core from TOKENGATE_NODE_MODULES (scripts/test's `npm ci` into
// target/browser-node), else from an `npm ci` here. An ES module finds bare
// imports only in node_modules beside or above itself, hence createRequire.
const modules = process.env.TOKENGATE_NODE_MODULES || path.join(here, 'node_modules');
const require = createRequire(path.join(modules, 'noop.js'));
const { chromium } = require('playwright-core');

export const CHROMIUM_ARGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
];

export async function launch() {
    return chromium.launch({
        executablePath: process.env.TOKENGATE_CHROMIUM || '/usr/bin/chromium',
        args: CHROMIUM_ARGS,
        timeout: 30_000,
    });
}

/// Settings from the Rust test (tests/e2e/browser.rs), which started the cluster.
export function settings() {
    const need = (name) => {
        const value = process.env[name];
        assert.ok(value, `${name} is not set (tests/e2e/browser.rs sets it)`);
        return value;
    };
    return {
        base: need('TG_BASE'), // http://localhost:<nginx's browser port>
        elsewhere: Number(need('TG_ELSEWHERE_PORT')),
        users: JSON.parse(need('TG_USERS')),
        artifacts: need('TG_ARTIFACTS'),
        scenarios: need('TG_SCENARIOS').split(','),
        timeouts: JSON.parse(process.env.TG_TIMEOUTS || '{}'),
    };
}

export const COOKIE = '__Host-tokengate';

/// The sign-in page's path and rd, or null if `url` is not the sign-in page.
export function signInPage(url, base) {
    const u = new URL(url);
    if (u.origin !== new URL(base).origin || u.pathname !== '/oauth2/sign_in') {
        return null;
    }
    return { rd: u.searchParams.get('rd') };
}

/// Asserts the page is the sign-in page (after the gate's redirect), with `rd`
/// the URL the browser had asked for, if given.
export function assertOnSignIn(page, base, rd, why) {
    const at = signInPage(page.url(), base);
    assert.ok(at, `${why}: expected the sign-in page, the browser is at ${page.url()}`);
    if (rd !== undefined) {
        assert.equal(at.rd, rd, `${why}: rd of ${page.url()}`);
    }
}

/// Fills the sign-in form the page shows and submits it; returns the status of
/// the POST's answer (303 on success, 400/403/429 otherwise) once the page that
/// follows has loaded.
export async function submitSignIn(page, user, { code, password } = {}) {
    await page.getByLabel('Email', { exact: true }).fill(user.email);
    await page.getByLabel('Password', { exact: true }).fill(password ?? user.password);
    if (code !== undefined) {
        await page.getByLabel('Authentication code').fill(code);
    }
    return submit(page, 'Sign in', '/oauth2/sign_in');
}

/// Clicks the button named `button` (a form POSTing to `action`); returns the
/// status of the POST's answer once the page that follows has loaded.
export async function submit(page, button, action, scope = page) {
    const answered = page.waitForResponse(
        (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === action,
    );
    // The page the answer leads to (after a 303, the one it names), loaded.
    const loaded = page.waitForEvent('load');
    await scope.getByRole('button', { name: button, exact: true }).click();
    const response = await answered;
    await loaded;
    return response.status();
}

/// Goes to `path` of the site, is sent to sign in, signs in as `user`; asserts
/// it is back on `path`.
export async function signIn(page, base, user, options = {}) {
    const target = base + (options.path ?? '/');
    await page.goto(target);
    assertOnSignIn(page, base, target, `visiting ${target} without a session`);
    const status = await submitSignIn(page, user, options);
    assert.equal(status, 303, `sign-in as ${user.email}: ${await pageText(page)}`);
    assert.equal(page.url(), target, 'back where the browser was going');
}

/// The app's JSON at `path` (/app/...), or null if the browser was sent to sign in.
export async function appSees(page, base, path = '/app/whoami') {
    const response = await page.goto(base + path);
    if (signInPage(page.url(), base)) {
        return null;
    }
    assert.equal(response.status(), 200, `${path}: ${await pageText(page)}`);
    return JSON.parse(await response.text());
}

/// The page's visible text, shortened, for messages.
export async function pageText(page) {
    const text = await page.evaluate(() => document.body?.innerText ?? '').catch(() => '');
    return `[${page.url()}] ${text.replace(/\s+/g, ' ').slice(0, 400)}`;
}

/// Submits a form built on whatever page `page` shows (another origin, for
/// CSRF), POSTing `fields` to `action`; returns the answer's status and
/// Location.
export async function postFormFrom(page, action, fields) {
    const answered = page.waitForResponse(
        (r) => r.request().method() === 'POST' && r.url() === action,
    );
    const loaded = page.waitForEvent('load');
    await page.evaluate(
        ({ action, fields }) => {
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            for (const [name, value] of Object.entries(fields)) {
                const input = document.createElement('input');
                input.type = 'hidden';
                input.name = name;
                input.value = value;
                form.appendChild(input);
            }
            document.body.appendChild(form);
            form.submit();
        },
        { action, fields },
    );
    const response = await answered;
    await loaded;
    return { status: response.status(), location: response.headers().location };
}

// --- TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits) -------------------------

export function base32Decode(text) {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    const out = [];
    let bits = 0;
    let value = 0;
    for (const c of text.replace(/[\s=-]/g, '').toUpperCase()) {
        const i = alphabet.indexOf(c);
        assert.ok(i >= 0, `not base32: ${JSON.stringify(text)}`);
        value = ((value << 5) | i) & 0xffff;
        bits += 5;
        if (bits >= 8) {
            out.push((value >>> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return Buffer.from(out);
}

export function hotp(key, counter, digits = 6) {
    const message = Buffer.alloc(8);
    message.writeBigUInt64BE(BigInt(counter));
    const mac = createHmac('sha1', key).update(message).digest();
    const offset = mac[mac.length - 1] & 0x0f;
    const number =
        ((mac[offset] & 0x7f) << 24) |
        (mac[offset + 1] << 16) |
        (mac[offset + 2] << 8) |
        mac[offset + 3];
    return String(number % 10 ** digits).padStart(digits, '0');
}

export const step = (ms = Date.now()) => Math.floor(ms / 1000 / 30);

// RFC 6238 Appendix B (SHA-1, T = 59 s → 94287082): the code below is right.
assert.equal(hotp(Buffer.from('12345678901234567890'), 1, 8), '94287082');
assert.equal(base32Decode('GEZDGNBVGY3TQOJQ').toString(), '1234567890');
