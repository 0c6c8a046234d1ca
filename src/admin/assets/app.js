// fulcrum dashboard: polls GET /api/v1/stats once a second (only the chart points it does not have
// yet), draws the charts as inline SVG, and keeps the server tables up to date in place, so that a
// button under the pointer is never replaced mid-click. Drain / disable / enable and weight
// changes go through PATCH /api/v1/backends/{b}/servers/{s}. Where the admin API has a token, the
// page asks for it once and keeps it in sessionStorage (gone when the tab closes).
'use strict';
(() => {
  const TOKEN_KEY = 'fulcrum-admin-token';
  const POLL_MS = 1000;
  const KEEP_POINTS = 600;
  const PALETTE = ['#7c3aed', '#0d9488', '#db2777', '#4f46e5', '#ca8a04', '#65a30d', '#0891b2', '#ea580c'];  // not the accent: 'total' has it
  const STATE_OF_CHAR = { c: 'checking', u: 'up', d: 'down', r: 'drain', x: 'disabled', s: 'standby' };

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let points = [];
  let lastT = 0;
  let range = 300;
  let stats = null;
  let waitingForToken = false;
  let pollTimer = null;
  let editing = null; // "backend/server" whose weight editor is open
  const backendColor = new Map();

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  // ---- formatting --------------------------------------------------------------------------

  function fmtRate(v) {
    if (v == null || isNaN(v)) return '–';
    if (v >= 10000) return (v / 1000).toFixed(1) + 'k';
    if (v >= 100) return Math.round(v).toLocaleString('en-US');
    if (v >= 10) return v.toFixed(1);
    if (v === 0) return '0';
    return v.toFixed(2);
  }
  function fmtMs(v, unit = true) {
    if (v == null || isNaN(v)) return '–';
    let s;
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + (unit ? ' s' : 's');
    if (v >= 100) s = Math.round(v).toString();
    else if (v >= 10) s = v.toFixed(1);
    else s = v.toFixed(2);
    return s + (unit ? ' ms' : '');
  }
  function fmtMsHtml(v) {
    if (v == null || isNaN(v)) return '–';
    if (v >= 1000) return (v / 1000).toFixed(2) + '<small>s</small>';
    return fmtMs(v, false) + '<small>ms</small>';
  }
  function fmtCount(n) { return n == null ? '–' : Number(n).toLocaleString('en-US'); }
  function fmtAgo(iso) {
    if (!iso) return '';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 2) return 'just now';
    if (s < 60) return Math.round(s) + 's ago';
    if (s < 3600) return Math.round(s / 60) + 'm ago';
    return Math.round(s / 3600) + 'h ago';
  }
  function fmtUptime(s) {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return `up ${d}d ${h}h`;
    if (h) return `up ${h}h ${m}m`;
    if (m) return `up ${m}m ${s % 60}s`;
    return `up ${s}s`;
  }
  function clock(t) {
    const d = new Date(t);
    return d.toLocaleTimeString('en-GB', { hour12: false });
  }
  function colorFor(name) {
    if (!backendColor.has(name)) backendColor.set(name, PALETTE[backendColor.size % PALETTE.length]);
    return backendColor.get(name);
  }
  // SVG presentation attributes take no var(): resolve theme colours from the stylesheet.
  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#0284c7';
  }
  function setHTML(el, html) {
    if (el && el._html !== html) {
      el.innerHTML = html;
      el._html = html;
    }
  }

  // ---- API ---------------------------------------------------------------------------------

  class AuthError extends Error {}

  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
    if (res.status === 401) {
      askForToken(token ? 'That token was refused.' : '');
      throw new AuthError('unauthorized');
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((data && data.error) || `HTTP ${res.status}`);
    return data;
  }

  function askForToken(message) {
    waitingForToken = true;
    $('token-bar').classList.remove('hidden');
    $('token-error').textContent = message || '';
    $('serving').dataset.kind = 'warn';
    $('serving').textContent = 'locked';
    $('token-input').focus();
  }

  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, token);
    waitingForToken = false;
    $('token-bar').classList.add('hidden');
    poll();
  });

  let toastTimer = null;
  function toast(text, bad) {
    const t = $('toast');
    t.textContent = text;
    t.classList.toggle('bad', !!bad);
    t.classList.remove('hidden');
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => t.classList.add('hidden'), 3200);
  }

  // ---- polling -----------------------------------------------------------------------------

  async function poll() {
    clearTimeout(pollTimer);
    if (waitingForToken) return;
    try {
      const s = await api('GET', '/api/v1/stats?since=' + lastT);
      stats = s;
      for (const p of s.points) if (p.t > lastT) points.push(p);
      if (points.length) lastT = points[points.length - 1].t;
      if (points.length > KEEP_POINTS) points = points.slice(points.length - KEEP_POINTS);
      render();
    } catch (e) {
      if (e instanceof AuthError) return;
      $('serving').dataset.kind = 'bad';
      $('serving').textContent = 'unreachable';
    }
    pollTimer = setTimeout(poll, POLL_MS);
  }

  async function patchServer(backend, server, change, label) {
    try {
      const s = await api('PATCH', `/api/v1/backends/${encodeURIComponent(backend)}/servers/${encodeURIComponent(server)}`, change);
      toast(`${backend}/${server} ${label}: now ${s.state}${change.weight != null ? ', weight ' + s.weight : ''}`);
    } catch (e) {
      if (!(e instanceof AuthError)) toast(`${backend}/${server}: ${e.message}`, true);
    }
    poll();
  }

  async function demoControl(app, fail) {
    try {
      const r = await api('POST', `/api/v1/demo/${encodeURIComponent(app)}/${fail ? 'fail' : 'recover'}`);
      toast(r.message + (fail ? ': watch its health checks fail' : ''));
    } catch (e) {
      if (!(e instanceof AuthError)) toast(`${app}: ${e.message}`, true);
    }
    poll();
  }

  // ---- rendering ---------------------------------------------------------------------------

  function render() {
    const s = stats;
    $('version').textContent = 'v' + s.version;
    $('uptime').textContent = fmtUptime(s.uptime_s);
    $('updated').textContent = 'updated ' + clock(s.now);
    const pill = $('serving');
    pill.dataset.kind = s.stopping ? 'warn' : 'ok';
    pill.textContent = s.stopping ? 'stopping' : 'serving';

    const servers = s.backends.flatMap((b) => b.servers);
    const count = (st) => servers.filter((x) => x.state === st).length;
    const active = s.listeners.reduce((a, l) => a + l.active, 0);
    const accepted = s.listeners.reduce((a, l) => a + l.accepted, 0);
    setHTML($('kpi-rps'), fmtRate(s.total.rps));
    setHTML($('kpi-rps-sub'), 'last 10 s');
    setHTML($('kpi-err'), fmtRate(s.total.err_rps));
    $('kpi-err').parentElement.classList.toggle('alert', s.total.err_rps > 0);
    const errShare = s.total.rps > 0 ? (100 * s.total.err_rps) / s.total.rps : 0;
    setHTML($('kpi-err-sub'), s.total.rps > 0 ? errShare.toFixed(errShare < 1 ? 2 : 1) + '% of requests' : 'no traffic');
    setHTML($('kpi-p50'), fmtMsHtml(s.total.p50_ms));
    setHTML($('kpi-p99'), fmtMsHtml(s.total.p99_ms));
    setHTML($('kpi-active'), fmtCount(active));
    setHTML($('kpi-active-sub'), fmtCount(accepted) + ' accepted');
    setHTML($('kpi-up'), `${count('up')}<small>/ ${servers.length}</small>`);
    $('kpi-up').parentElement.classList.toggle('alert', count('down') > 0);
    const notUp = ['down', 'drain', 'disabled', 'checking', 'standby'].filter((st) => count(st)).map((st) => `${count(st)} ${st}`);
    setHTML($('kpi-up-sub'), notUp.length ? notUp.join(' · ') : 'all serving');

    renderCharts();
    renderBackends(s.backends);
    renderListeners(s.listeners);
    renderEvents(s.events || []);
  }

  function renderCharts() {
    const backends = stats.backends.map((b) => b.name);
    const accent = cssVar('--accent'), down = cssVar('--down');
    const rpsSeries = [{ name: 'total', color: accent, area: true, get: (p) => p.rps, fmt: fmtRate }];
    if (backends.length > 1)
      for (const b of backends) rpsSeries.push({ name: b, color: colorFor(b), get: (p) => (p.backends ? p.backends[b] || 0 : 0), fmt: fmtRate });
    rpsSeries.push({ name: '5xx', color: down, get: (p) => p.err_rps, fmt: fmtRate });
    drawChart($('chart-rps'), $('legend-rps'), rpsSeries, { fmt: fmtRate, unit: '/s', min: 1 });
    const latSeries = [
      { name: 'p50', color: accent, area: true, get: (p) => (p.rps > 0 ? p.p50_ms : null), fmt: (v) => fmtMs(v) },
      { name: 'p99', color: '#9333ea', get: (p) => (p.rps > 0 ? p.p99_ms : null), fmt: (v) => fmtMs(v) },
    ];
    drawChart($('chart-lat'), $('legend-lat'), latSeries, { fmt: (v) => fmtMs(v, false), unit: 'ms', min: 1 });
  }

  function niceMax(v, min) {
    v = Math.max(v, min);
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function axisLabel(v) {
    if (v === 0) return '0';
    if (v >= 10000) return (v / 1000).toFixed(v % 1000 ? 1 : 0) + 'k';
    if (Number.isInteger(v)) return String(v);
    return v < 1 ? v.toFixed(2).replace(/0$/, '') : v.toFixed(1).replace(/\.0$/, '');
  }

  function drawChart(el, legendEl, series, opts) {
    const w = Math.max(200, el.clientWidth), h = Math.max(120, el.clientHeight);
    const pad = { l: 46, r: 10, t: 12, b: 24 };
    // The window ends at the newest point; while there is less history than the window, it
    // starts at the oldest point (at least a minute), so a fresh start is not a flat empty chart.
    const end = points.length ? points[points.length - 1].t : Date.now();
    const oldest = points.length ? points[0].t : end;
    const start = Math.max(end - range * 1000, Math.min(oldest, end - 60000));
    const vis = points.filter((p) => p.t >= start);
    let max = 0;
    for (const s of series) for (const p of vis) { const v = s.get(p); if (v != null && v > max) max = v; }
    max = niceMax(max * 1.08, opts.min);
    const x = (t) => pad.l + ((t - start) / (end - start || 1)) * (w - pad.l - pad.r);
    const y = (v) => pad.t + (1 - v / max) * (h - pad.t - pad.b);
    let svg = `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none">`;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4, yy = y(v).toFixed(1);
      svg += `<line class="grid-line" x1="${pad.l}" x2="${w - pad.r}" y1="${yy}" y2="${yy}"/>`;
      svg += `<text class="axis-label" x="${pad.l - 8}" y="${(+yy + 4).toFixed(1)}" text-anchor="end">${esc(axisLabel(v))}</text>`;
    }
    const span = (end - start) / 1000;
    const step = span <= 90 ? 15 : span <= 180 ? 30 : span <= 360 ? 60 : 120;
    for (let t = Math.ceil(start / 1000 / step) * step * 1000; t <= end; t += step * 1000) {
      const xx = x(t).toFixed(1);
      svg += `<text class="axis-label" x="${xx}" y="${h - 6}" text-anchor="middle">${esc(clock(t).slice(0, step < 60 ? 8 : 5))}</text>`;
    }
    if (vis.length < 2) {
      svg += `<text class="empty" x="${(w / 2).toFixed(0)}" y="${(h / 2).toFixed(0)}" text-anchor="middle">collecting… (one point a second)</text>`;
    }
    for (const s of series.slice().reverse()) {
      let d = '', prevT = null, first = null, lastX = null;
      const areas = [];
      for (const p of vis) {
        const v = s.get(p);
        if (v == null) { prevT = null; continue; }
        const px = x(p.t).toFixed(1), py = y(v).toFixed(1);
        const gap = prevT == null || p.t - prevT > 2500;
        if (gap) {
          if (first != null && s.area) areas.push(`${d.slice(d.lastIndexOf('M'))} L${lastX},${y(0).toFixed(1)} L${first},${y(0).toFixed(1)} Z`);
          d += `M${px},${py}`;
          first = px;
        } else {
          d += ` L${px},${py}`;
        }
        lastX = px;
        prevT = p.t;
      }
      if (first != null && s.area) areas.push(`${d.slice(d.lastIndexOf('M'))} L${lastX},${y(0).toFixed(1)} L${first},${y(0).toFixed(1)} Z`);
      for (const a of areas) svg += `<path class="area" fill="${s.color}" d="${a}"/>`;
      if (d) svg += `<path class="series" stroke="${s.color}" d="${d}"/>`;
    }
    svg += `<line class="cursor hidden" x1="0" x2="0" y1="${pad.t}" y2="${h - pad.b}"/>`;
    svg += `<rect class="hover" x="${pad.l}" y="0" width="${w - pad.l - pad.r}" height="${h}" fill="transparent"/>`;
    svg += '</svg>';
    el.innerHTML = svg;
    setHTML(legendEl, series.map((s) => `<span><i class="sw" data-color="${esc(s.color)}"></i>${esc(s.name)}</span>`).join(''));
    for (const i of legendEl.querySelectorAll('i.sw')) i.style.background = i.dataset.color;

    const rect = el.querySelector('rect.hover');
    const cursor = el.querySelector('line.cursor');
    const tip = $('tooltip');
    const show = (clientX, clientY) => {
      if (!vis.length) return;
      const box = el.querySelector('svg').getBoundingClientRect();
      const mx = ((clientX - box.left) / box.width) * w;
      let best = vis[0];
      for (const p of vis) if (Math.abs(x(p.t) - mx) < Math.abs(x(best.t) - mx)) best = p;
      const bx = x(best.t).toFixed(1);
      cursor.setAttribute('x1', bx);
      cursor.setAttribute('x2', bx);
      cursor.classList.remove('hidden');
      let html = `<div class="t">${esc(clock(best.t))}</div>`;
      for (const s of series) {
        const v = s.get(best);
        html += `<div class="row"><span><i data-color="${esc(s.color)}"></i>${esc(s.name)}</span><b>${esc(v == null ? '–' : s.fmt(v))}</b></div>`;
      }
      tip.innerHTML = html;
      for (const i of tip.querySelectorAll('i')) i.style.background = i.dataset.color;
      tip.classList.remove('hidden');
      const tw = tip.offsetWidth;
      tip.style.left = (clientX + 16 + tw > window.innerWidth ? clientX - tw - 16 : clientX + 16) + 'px';
      tip.style.top = clientY + 12 + 'px';
      el._hover = [clientX, clientY];
    };
    rect.addEventListener('mousemove', (e) => show(e.clientX, e.clientY));
    rect.addEventListener('mouseleave', () => {
      el._hover = null;
      cursor.classList.add('hidden');
      tip.classList.add('hidden');
    });
    if (el._hover) show(el._hover[0], el._hover[1]);
  }

  function stateBadge(state, extra) {
    return `<span class="state ${esc(state)}">${esc(state)}</span>${extra || ''}`;
  }

  function historyStrip(h) {
    if (!h) return '';
    const last = h.slice(-60);
    let out = '<span class="history" title="state over the last minute, one bar a second">';
    for (const c of last) out += `<i class="c-${STATE_OF_CHAR[c] || 'checking'}"></i>`;
    return out + '</span>';
  }

  function checkCell(c, kind) {
    if (kind === 'none') return '<span class="muted">no active check</span>';
    if (!c) return '<span class="muted">waiting for the first check</span>';
    const cls = c.result === 'pass' ? '' : ' fail';
    return `<span class="reason${cls}">${esc(c.reason)} <span class="muted mono">${esc(c.code)}</span></span>` +
      `<span class="when">${esc(fmtAgo(c.at))} · ${esc(fmtMs(c.duration_ms))}${c.consecutive > 1 ? ' · ' + c.consecutive + ' in a row' : ''}</span>`;
  }

  // What the server's agent reported (issue 11): cpu, mem, N%, its own state, or why it failed.
  function loadLine(rl) {
    if (!rl) return '';
    const parts = [];
    if (rl.cpu != null) parts.push('cpu ' + Math.round(rl.cpu * 100) + '%');
    if (rl.mem != null) parts.push('mem ' + Math.round(rl.mem * 100) + '%');
    if (rl.percent != null && rl.percent !== 100) parts.push(rl.percent + '%');
    if (rl.state && rl.state !== 'none' && rl.state !== 'up') parts.push('agent: ' + rl.state);
    let out = parts.length ? `<span class="sub load" title="reported by the server's agent">${esc(parts.join(' · '))}</span>` : '';
    if (rl.error) out += `<span class="sub load fail" title="${esc(rl.error)}">agent: ${esc(rl.error)}</span>`;
    return out;
  }

  function actionButtons(b, s) {
    const data = `data-backend="${esc(b.name)}" data-server="${esc(s.name)}"`;
    // `fulcrum demo`: its app servers can be made to fail their health check from here.
    const demo = stats && stats.demo && b.health_check === 'http'
      ? (s.health === 'down'
        ? `<button class="btn good" data-action="demo-recover" ${data}>Recover</button>`
        : `<button class="btn danger" data-action="demo-fail" ${data}>Make it fail</button>`)
      : '';
    if (s.admin === 'none')
      return `<button class="btn warn" data-action="drain" ${data}>Drain</button><button class="btn danger" data-action="disabled" ${data}>Disable</button>${demo}`;
    const other = s.admin === 'drain'
      ? `<button class="btn danger" data-action="disabled" ${data}>Disable</button>`
      : `<button class="btn warn" data-action="drain" ${data}>Drain</button>`;
    return `<button class="btn good" data-action="up" ${data}>Enable</button>${other}${demo}`;
  }

  const backendCards = new Map();

  function renderBackends(backends) {
    const root = $('backends');
    const seen = new Set();
    for (const b of backends) {
      seen.add(b.name);
      let card = backendCards.get(b.name);
      if (!card) {
        card = document.createElement('div');
        card.className = 'card backend';
        card.dataset.backend = b.name;
        card.innerHTML = `<div class="backend-head"><h3></h3><span class="tag balance"></span><span class="tag check"></span><span class="tag sticky"></span><span class="upbar"></span><div class="backend-stats"></div></div>
          <table class="grid servers"><thead><tr>
            <th>state</th><th>server</th><th class="num">weight</th><th class="num">active</th><th class="num">req/s</th>
            <th class="num">p50</th><th class="num">p99</th><th class="num">avg</th><th>last check</th><th>last minute</th><th></th>
          </tr></thead><tbody></tbody></table>`;
        card._rows = new Map();
        backendCards.set(b.name, card);
        root.appendChild(card);
      }
      card.querySelector('h3').textContent = b.name;
      card.querySelector('.tag.balance').textContent = b.balance;
      card.querySelector('.tag.check').textContent = 'check: ' + b.health_check;
      const sticky = card.querySelector('.tag.sticky');
      sticky.textContent = b.sticky ? 'sticky: ' + b.sticky : '';
      sticky.classList.toggle('hidden', !b.sticky);
      setHTML(card.querySelector('.upbar'), b.servers.map((s) => `<i class="c-${esc(s.state)}" title="${esc(s.name)}: ${esc(s.state)}"></i>`).join(''));
      setHTML(card.querySelector('.backend-stats'),
        `<span><b>${b.servers_up}</b>/${b.servers.length} up</span><span><b>${fmtRate(b.rps)}</b> req/s</span>` +
        `<span>p99 <b>${fmtMs(b.p99_ms)}</b></span>` + (b.err_rps > 0 ? `<span class="error">${fmtRate(b.err_rps)} 5xx/s</span>` : ''));
      const maxActive = Math.max(1, ...b.servers.map((s) => s.active));
      const tbody = card.querySelector('tbody');
      for (const s of b.servers) {
        const key = b.name + '/' + s.name;
        let row = card._rows.get(s.name);
        if (!row) {
          row = document.createElement('tr');
          row.dataset.server = s.name;
          row.innerHTML = '<td class="st"></td><td class="name"></td><td class="num w"></td><td class="num act"></td><td class="num rps"></td>' +
            '<td class="num p50"></td><td class="num p99"></td><td class="num ewma"></td><td class="check"></td><td class="hist"></td><td class="actions"></td>';
          card._rows.set(s.name, row);
          tbody.appendChild(row);
        }
        const c = (sel) => row.querySelector(sel);
        row.dataset.state = s.state;
        setHTML(c('.st'), stateBadge(s.state, s.ejected ? '<span class="flag" title="ejected by passive checks">ejected</span>' : ''));
        setHTML(c('.name'), `${esc(s.name)}${s.backup ? ' <span class="tag">backup</span>' : ''}<span class="sub">${esc(s.address)}</span>`);
        if (editing !== key) {
          const eff = Math.abs(s.effective_weight - s.weight) > 0.001
            ? ` <span class="muted" title="effective weight (slow start, agent report)">→ ${+s.effective_weight.toFixed(2)}</span>` : '';
          setHTML(c('.w'), `<button class="weight-btn" data-action="weight" data-backend="${esc(b.name)}" data-server="${esc(s.name)}" title="click to change">${s.weight}</button>${eff}${loadLine(s.reported_load)}`);
        }
        setHTML(c('.act'), `${s.active}<span class="bar"><span data-w="${Math.round((100 * s.active) / maxActive)}"></span></span>`);
        const bar = c('.act .bar > span');
        if (bar) bar.style.width = bar.dataset.w + '%';
        setHTML(c('.rps'), fmtRate(s.rps));
        setHTML(c('.p50'), fmtMs(s.p50_ms));
        setHTML(c('.p99'), fmtMs(s.p99_ms));
        setHTML(c('.ewma'), s.ewma_ms ? fmtMs(s.ewma_ms) : '–');
        setHTML(c('.check'), checkCell(s.last_check, b.health_check));
        setHTML(c('.hist'), historyStrip(s.history));
        setHTML(c('.actions'), actionButtons(b, s));
      }
      for (const [name, row] of card._rows)
        if (!b.servers.some((s) => s.name === name)) { row.remove(); card._rows.delete(name); }
    }
    for (const [name, card] of backendCards)
      if (!seen.has(name)) { card.remove(); backendCards.delete(name); }
  }

  function renderListeners(listeners) {
    setHTML($('listeners').querySelector('tbody'), listeners.map((l) =>
      `<tr><td class="name">${esc(l.name)}</td><td><span class="tag">${esc(l.protocol)}</span></td><td class="num">${fmtCount(l.active)}</td>` +
      `<td class="num">${fmtCount(l.accepted)}</td><td class="num">${fmtCount(l.refused)}</td></tr>`).join('') ||
      '<tr><td class="muted" colspan="5">no listeners</td></tr>');
  }

  function renderEvents(events) {
    if (!events.length) return setHTML($('events'), '<li class="muted">no state changes since start</li>');
    setHTML($('events'), events.slice().reverse().map((e) =>
      `<li><span class="t">${esc(clock(e.t))}</span><span><b>${esc(e.backend)}/${esc(e.server)}</b></span>` +
      `${stateBadge(e.from)}<span class="arrow">→</span>${stateBadge(e.to)}<span class="why">${esc(e.reason || '')}</span></li>`).join(''));
  }

  // ---- interaction -------------------------------------------------------------------------

  $('backends').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action]');
    if (!btn) return;
    const { action, backend, server } = btn.dataset;
    if (action === 'weight') return openWeightEditor(btn, backend, server);
    btn.disabled = true;
    if (action === 'demo-fail' || action === 'demo-recover') return demoControl(server, action === 'demo-fail');
    const label = { drain: 'drained', disabled: 'disabled', up: 'enabled' }[action];
    patchServer(backend, server, { state: action }, label);
  });

  function openWeightEditor(btn, backend, server) {
    const key = backend + '/' + server;
    editing = key;
    const cell = btn.parentElement;
    const input = document.createElement('input');
    input.type = 'number';
    input.min = 0;
    input.max = 256;
    input.value = btn.textContent;
    input.className = 'weight-input';
    cell.innerHTML = '';
    cell._html = null;
    cell.appendChild(input);
    input.focus();
    input.select();
    let done = false;
    const close = (save) => {
      if (done) return;
      done = true;
      editing = null;
      if (save) patchServer(backend, server, { weight: Number(input.value) }, 'weight set');
      else poll();
    };
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') close(true);
      if (ev.key === 'Escape') close(false);
    });
    input.addEventListener('blur', () => close(false));
  }

  for (const b of document.querySelectorAll('.seg')) {
    b.addEventListener('click', () => {
      range = Number(b.dataset.range);
      for (const o of document.querySelectorAll('.seg')) o.classList.toggle('active', o === b);
      if (stats) renderCharts();
    });
  }
  window.addEventListener('resize', () => { if (stats) renderCharts(); });

  poll();
})();
