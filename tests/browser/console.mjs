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

// The lowest contrast between any text on the page and the background behind it (WCAG's
// ratio: 4.5 is the AA floor for body text).
async function lowestContrast(page) {
  return await page.evaluate(() => {
    const parse = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = (rgb) => {
      const [r, g, b] = rgb.map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    let worst = { ratio: 99 };
    for (const el of document.querySelectorAll('header *, main *')) {
      if (el.closest('svg')) continue; // chart labels are drawn with their own fills
      const hasText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!hasText) continue;
      const [hi, lo] = [lum(parse(getComputedStyle(el).color).slice(0, 3)), lum(background(el))].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      if (ratio < worst.ratio) worst = { ratio, text: el.textContent.trim().slice(0, 40), tag: el.tagName };
    }
    return worst;
  });
}

async function fits(page, name, width) {
  await page.setViewportSize({ width, height: 900 });
  await page.waitForLoadState('load');
  const { scroll, client } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
  }));
  await page.screenshot({ path: `${shots}/${name}-${width}.png`, fullPage: true });
  out.layout.push({ page: name, width, scroll, client, contrast: await lowestContrast(page) });
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

  // A backup running in the daemon shows on the overview with what it has read so far.
  {
    const context = await browser.newContext();
    const { page } = await signIn(context, tokens.operator);
    let text = '';
    for (let i = 0; i < 60 && !/MiB read/.test(text); i++) {
      await page.goto(`${base}/ui`);
      text = (await page.locator('li.job').allInnerTexts()).join('\n');
      if (!/MiB read/.test(text)) await page.waitForTimeout(500);
    }
    out.progress = text;
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

  // Restore requests from the browser: the recovery owner asks; the same person, signed
  // in as an approver, is refused; a second person approves; the operator runs it and the
  // page follows it to its end; each step is in the audit log.
  if (process.env.RESTORE_TARGET) {
    out.requests = { forms: {}, decide_buttons: {}, run_buttons: {} };
    const owner = await browser.newContext();
    const { page } = await signIn(owner, tokens['recovery-owner']);
    await page.goto(`${base}/ui/requests`);
    await page.getByLabel('Policy').selectOption('shop');
    await page.getByLabel(/^Target/).fill(process.env.RESTORE_TARGET);
    await page.getByLabel(/^Reason/).fill('the shop page was overwritten');
    await page.getByRole('button', { name: 'Ask for approval' }).click();
    await page.getByRole('heading', { name: /^Restore request req-/ }).waitFor();
    const id = (await page.getByRole('heading', { name: /^Restore request / }).innerText()).replace('Restore request ', '');
    out.requests.id = id;
    out.requests.created = await page.locator('main > p .state').innerText();
    for (const width of [1280, 390]) {
      await page.goto(`${base}/ui/requests`);
      await fits(page, 'requests', width);
      await page.goto(`${base}/ui/policies/site`);
      await fits(page, 'policy', width);
    }
    // `site` has objectives, a backup and a drill; `shop` has the request.
    out.requests.policy_page = {
      charts: await page.locator('main svg').count(),
      rpo_labels: await page.locator('svg.rpo-chart text').allTextContents(),
      rto_labels: await page.locator('svg.rto-chart text').allTextContents(),
      backup_bars: await page.locator('svg.backup-chart rect').count(),
      tables: await page.locator('main table').count(),
    };
    await page.goto(`${base}/ui/policies/shop`);
    out.requests.policy_page.request_listed = await page.getByRole('link', { name: id }).count();
    await owner.close();

    // What each role may do, seen from the list and from the pending request.
    for (const [role, token] of Object.entries(tokens)) {
      const context = await browser.newContext();
      const { page } = await signIn(context, token);
      await page.goto(`${base}/ui/requests`);
      out.requests.forms[role] = await page.locator('form[action="/ui/requests"]').count();
      await page.goto(`${base}/ui/requests/${id}`);
      out.requests.decide_buttons[role] = await page.getByRole('button', { name: 'Approve' }).count();
      await context.close();
    }

    // The requester, signed in as an approver, cannot decide their own request.
    {
      const context = await browser.newContext();
      const { page } = await signIn(context, process.env.SAME_PERSON_APPROVER);
      await page.goto(`${base}/ui/requests/${id}`);
      out.requests.same_person = {
        buttons: await page.getByRole('button', { name: 'Approve' }).count(),
        text: await page.locator('main').innerText(),
      };
      const csrf = await page.locator('header input[name=csrf]').inputValue();
      const forged = await page.request.post(`${base}/ui/requests/${id}/approve`, { form: { csrf, comment: 'mine' } });
      out.requests.same_person.post = forged.status();
      out.requests.same_person.post_text = await forged.text();
      await context.close();
    }

    // A role cannot act beyond itself with its own session and CSRF token.
    {
      const context = await browser.newContext();
      const { page } = await signIn(context, tokens.auditor);
      const csrf = await page.locator('header input[name=csrf]').inputValue();
      out.requests.auditor_create = (await page.request.post(`${base}/ui/requests`, {
        form: { csrf, policy: 'shop', target: process.env.RESTORE_TARGET, reason: 'not mine to ask' },
      })).status();
      out.requests.auditor_approve = (await page.request.post(`${base}/ui/requests/${id}/approve`, { form: { csrf } })).status();
      await context.close();
    }

    // A second person approves.
    {
      const context = await browser.newContext();
      const { page } = await signIn(context, tokens.approver);
      await page.goto(`${base}/ui/requests/${id}`);
      // From the keyboard alone: Tab to the comment, type, Tab to Approve, Enter.
      let tabs = 0;
      while (tabs < 30 && !(await page.evaluate(() => document.activeElement && document.activeElement.id === 'approve-comment'))) {
        await page.keyboard.press('Tab');
        tabs++;
      }
      out.requests.tabs_to_comment = tabs;
      await page.keyboard.type('checked with the shop team');
      await page.keyboard.press('Tab');
      out.requests.focused_after_comment = await page.evaluate(() => document.activeElement.textContent);
      await page.keyboard.press('Enter');
      await page.locator('main > p .state', { hasText: 'approved' }).waitFor();
      out.requests.approved = await page.locator('main > p .state').innerText();
      out.requests.approver_run_buttons = await page.getByRole('button', { name: /^Run/ }).count();
      const csrf = await page.locator('header input[name=csrf]').inputValue();
      out.requests.approver_run_post = (await page.request.post(`${base}/ui/requests/${id}/run`, { form: { csrf } })).status();
      await context.close();
    }

    // The operator runs it; the page follows it to its end.
    {
      const context = await browser.newContext();
      const { page } = await signIn(context, tokens.operator);
      await page.goto(`${base}/ui/requests/${id}`);
      await page.getByRole('button', { name: 'Run the restore now' }).click();
      await page.locator('main > p .state', { hasText: /succeeded|failed/ }).waitFor({ timeout: 120000 });
      out.requests.ended = await page.locator('main > p .state').innerText();
      out.requests.outcome = await page.locator('dt:text-is("outcome") + dd').innerText();
      out.requests.steps = await page.locator('table[aria-label="Steps of the request"] td[data-label="what"]').allInnerTexts();
      for (const width of [1280, 390]) {
        await fits(page, 'request', width);
      }
      await context.close();
    }

    // The audit page: the chain's state, the public key, every step of the request, and
    // a signed evidence pack to download.
    {
      const context = await browser.newContext({ acceptDownloads: true });
      const { page } = await signIn(context, tokens.auditor);
      await page.goto(`${base}/ui/audit`);
      out.audit = {
        chain: await page.locator('p.chain .state').innerText(),
        public_key: (await page.locator('#public-key').innerText()).trim(),
      };
      const rows = page.locator('table[aria-label="Audit events"] tbody tr');
      const kinds = [];
      for (let i = 0; i < await rows.count(); i++) {
        const subject = await rows.nth(i).locator('td[data-label="subject"]').innerText();
        if (subject === id) {
          kinds.push({
            what: await rows.nth(i).locator('td[data-label="what"]').innerText(),
            who: await rows.nth(i).locator('td[data-label="who"]').innerText(),
          });
        }
      }
      out.audit.request_events = kinds;
      for (const width of [1280, 390]) {
        await fits(page, 'audit', width);
      }
      const downloading = page.waitForEvent('download');
      await page.getByRole('button', { name: 'Download the signed evidence pack' }).click();
      const download = await downloading;
      out.audit.pack_name = download.suggestedFilename();
      await download.saveAs(`${shots}/pack.tar`);
      await context.close();
    }
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
