// The web console in a real browser: Debian's chromium driven by playwright-core (which
// never downloads a browser of its own). Run by tests/e2e/console.rs against a daemon it
// started; prints one JSON object of findings on stdout, which the Rust test asserts on.
//
//   BASE_URL=http://127.0.0.1:PORT TOKENS='{"auditor":"bst_…",…}' SHOTS=DIR node console.mjs

import { chromium } from 'playwright-core';

const base = process.env.BASE_URL;
const tokens = JSON.parse(process.env.TOKENS);
const shots = process.env.SHOTS;
const lifetimeSeconds = Number(process.env.SESSION_SECONDS || '0');
const out = { roles: {}, layout: [], security: {} };

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
});

async function fits(page, name, width) {
  await page.setViewportSize({ width, height: 900 });
  await page.waitForLoadState('load');
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
  out.layout.push({ page: name, width, scroll, client });
}

async function signIn(context, token) {
  const page = await context.newPage();
  const response = await page.goto(`${base}/ui`);
  const before = { status: response.status(), hasForm: await page.locator('form input[name=token]').count() };
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  // The sign-in page is at /ui too: wait for the overview itself.
  await page.getByRole('heading', { name: 'Overview' }).waitFor();
  return { page, before };
}

try {
  // Without a session: only the sign-in.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    const response = await page.goto(`${base}/ui`);
    out.anonymous = {
      status: response.status(),
      form: await page.locator('form[action="/ui/sign-in"] input[name=token]').count(),
      overview: await page.getByRole('heading', { name: 'Overview' }).count(),
      text: (await page.locator('main').innerText()).slice(0, 400),
    };
    const evidence = await page.goto(`${base}/ui/evidence`);
    out.anonymous.evidence_status = evidence.status();
    await context.close();
  }

  // Each role signs in and sees the overview as itself; the cookie holds no token.
  for (const [role, token] of Object.entries(tokens)) {
    const context = await browser.newContext();
    const { page, before } = await signIn(context, token);
    const cookies = await context.cookies();
    const session = cookies.find((c) => c.name === 'backstop_session');
    const html = await page.content();
    out.roles[role] = {
      before,
      header: await page.locator('header .who').innerText(),
      heading: await page.getByRole('heading', { name: 'Overview' }).count(),
      policies: await page.locator('.cards > li h2').allInnerTexts(),
      states: await page.locator('.cards > li .state').allInnerTexts(),
      legend: await page.getByRole('list', { name: 'Legend' }).count(),
      cookie: session && {
        httpOnly: session.httpOnly,
        sameSite: session.sameSite,
        expiresIn: session.expires - Date.now() / 1000,
        path: session.path,
      },
      token_in_page: html.includes(token),
      token_in_cookie: cookies.some((c) => c.value.includes(token)),
    };
    if (role === 'auditor') {
      for (const width of [1280, 390]) {
        await page.goto(`${base}/ui`);
        await fits(page, 'overview', width);
        await page.goto(`${base}/ui/evidence`);
        await fits(page, 'evidence', width);
      }
      // Actions need the session's CSRF token and the console's origin.
      await page.goto(`${base}/ui`);
      const noToken = await page.request.post(`${base}/ui/sign-out`, { form: {} });
      const wrongToken = await page.request.post(`${base}/ui/sign-out`, { form: { csrf: 'forged' } });
      const crossSite = await page.request.post(`${base}/ui/sign-out`, {
        form: { csrf: await page.locator('input[name=csrf]').first().inputValue() },
        headers: { Origin: 'http://evil.example' },
      });
      out.security.without_csrf = noToken.status();
      out.security.wrong_csrf = wrongToken.status();
      out.security.cross_site = crossSite.status();
      // Still signed in after the refused attempts; signing out ends the session.
      await page.goto(`${base}/ui`);
      out.security.still_signed_in = await page.getByRole('heading', { name: 'Overview' }).count();
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('API token').waitFor({ timeout: 10000 }).catch(() => {});
      out.security.after_sign_out_form = await page.locator('input[name=token]').count();
      // Keyboard: the sign-in works from the keyboard alone.
      await page.getByLabel('API token').focus();
      await page.keyboard.type(token);
      await page.keyboard.press('Enter');
      await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: 10000 }).catch(() => {});
      out.security.keyboard_sign_in = await page.getByRole('heading', { name: 'Overview' }).count();
    }
    await context.close();
  }

  // A drill is signed off from its page by the policy's recovery owner, and by nobody
  // else: an auditor sees no form, and a sign-off posted with the auditor's own session
  // and CSRF token is refused.
  {
    const auditor = await browser.newContext();
    const { page: seen } = await signIn(auditor, tokens.auditor);
    const link = seen.locator('#policy-shop').locator('xpath=..').getByRole('link', { name: "Last drill's report" });
    const href = await link.getAttribute('href');
    await seen.goto(`${base}${href}`);
    out.signoff = { drill_page: href, auditor_form: await seen.locator('textarea[name=comment]').count() };
    const csrf = await seen.locator('header input[name=csrf]').inputValue();
    const forged = await seen.request.post(`${base}${href}/signoff`, { form: { csrf, comment: 'not mine to sign' } });
    out.signoff.auditor_post = forged.status();
    await auditor.close();

    const owner = await browser.newContext();
    const { page } = await signIn(owner, tokens['recovery-owner']);
    await page.goto(`${base}${href}`);
    out.signoff.checks = await page.locator('.cards > li h3').allInnerTexts();
    out.signoff.breakdown = await page.locator('dt:text-is("RTO breakdown") + dd').innerText();
    await page.getByLabel('What you reviewed').fill('restored site checked by hand');
    await page.getByRole('button', { name: 'Sign off' }).click();
    await page.getByText('Signed off by').waitFor();
    out.signoff.after = await page.locator('main').innerText();
    for (const width of [1280, 390]) {
      await fits(page, 'drill', width);
    }
    await owner.close();
  }

  // A bad token is refused on the sign-in page.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/ui`);
    await page.getByLabel('API token').fill('bst_not_a_token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    out.security.bad_token = await page.getByRole('alert').innerText();
    out.security.bad_token_cookie = (await context.cookies()).length;
    await context.close();
  }

  // An expired session is refused: back to the sign-in.
  if (lifetimeSeconds > 0) {
    const context = await browser.newContext();
    const { page } = await signIn(context, Object.values(tokens)[0]);
    const cookie = (await context.cookies()).find((c) => c.name === 'backstop_session');
    await page.waitForTimeout((lifetimeSeconds + 1) * 1000);
    // The browser drops an expired cookie itself; send it anyway, as a replay would, so
    // that the daemon's own expiry is what is tested.
    const stale = await page.request.get(`${base}/ui`, {
      headers: { Accept: 'text/html', Cookie: `backstop_session=${cookie.value}` },
    });
    out.security.expired_status = stale.status();
    out.security.expired_form = (await stale.text()).includes('name="token"');
    await context.close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
