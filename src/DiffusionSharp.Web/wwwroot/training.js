'use strict';
// Training page: polls /api/runs every 2 s and redraws each run's numbers, loss curve and newest sample grid.
const $ = id => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

function fmtDuration(s) {
  if (s == null) return '—';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : m > 0 ? `${m} min ${String(sec).padStart(2, '0')} s` : `${sec} s`;
}
const fmt = (v, d) => v == null ? '—' : Number(v).toFixed(d);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  e.append(...kids);
  return e;
}

function curve(points, id) {
  const w = 600, h = 200, pad = 36;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('class', 'curve');
  svg.setAttribute('role', 'img');
  if (points.length < 2) {
    svg.setAttribute('aria-label', `Loss curve of ${id}: not enough points yet`);
    return svg;
  }
  const xs = points.map(p => p[0]), ys = points.map(p => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  // diffusion losses fall by orders of magnitude early on: a log axis when every loss is positive
  const log = y0 > 0;
  const f = log ? Math.log10 : (y => y);
  const sx = x => pad + (x - x0) / Math.max(x1 - x0, 1e-12) * (w - pad - 8);
  const sy = y => h - pad / 2 - (f(y) - f(y0)) / Math.max(f(y1) - f(y0), 1e-12) * (h - pad);
  svg.setAttribute('aria-label', `Loss curve of ${id}: steps ${x0} to ${x1}, loss from ${ys[0].toFixed(4)} to ${ys[ys.length - 1].toFixed(4)} (min ${y0.toFixed(4)})`);
  const axis = document.createElementNS(SVG, 'path');
  axis.setAttribute('class', 'axis');
  axis.setAttribute('d', `M${pad},8 V${h - pad / 2} H${w - 8}`);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('class', 'line');
  line.setAttribute('points', points.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' '));
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(SVG, 'text');
    t.setAttribute('x', x); t.setAttribute('y', y); t.setAttribute('text-anchor', anchor || 'start');
    t.textContent = text;
    return t;
  };
  svg.append(axis, line, label(2, 14, y1.toPrecision(3)), label(2, h - pad / 2, y0.toPrecision(3)),
    label(pad + 6, 14, log ? 'loss (log scale)' : 'loss'),
    label(pad, h - 4, `step ${x0}`), label(w - 8, h - 4, `step ${x1}`, 'end'));
  return svg;
}

function render(detail) {
  const r = detail.run;
  const stat = (name, value) => el('div', {}, el('dt', {}, name), el('dd', {}, value));
  const step = r.totalSteps ? `${r.step} / ${r.totalSteps}` : String(r.step);
  const section = el('section', { class: 'run', 'aria-labelledby': `run-${r.id}` },
    el('h2', { id: `run-${r.id}` }, r.id));
  const left = el('div', {},
    el('dl', { class: 'stats' },
      stat('Step', step), stat('Loss', fmt(r.loss, 4)), stat('Images/s', fmt(r.imagesPerSecond, 1)),
      stat('ETA', r.totalSteps && r.step >= r.totalSteps ? 'finished' : fmtDuration(r.etaSeconds)),
      stat('Updated', r.updated ? new Date(r.updated).toLocaleTimeString() : '—')),
    curve(detail.points, r.id));
  const fig = el('figure', {});
  if (r.latestSample) {
    fig.append(el('img', { src: `/api/runs/${encodeURIComponent(r.id)}/samples/${encodeURIComponent(r.latestSample)}`, alt: `Latest sample grid of ${r.id} (${r.latestSample})` }),
      el('figcaption', {}, `Latest samples: ${r.latestSample}`));
  } else {
    fig.append(el('figcaption', {}, 'No sample grid yet (train with --sample-every N).'));
  }
  section.append(left, fig);
  return section;
}

async function refresh() {
  try {
    const list = await (await fetch('/api/runs')).json();
    if (list.runs.length === 0) {
      $('runs-status').textContent = 'No training runs found. Start the server with --runs DIR, where DIR holds the folders given to diffusion train -o.';
      $('runs').replaceChildren();
      return;
    }
    const details = await Promise.all(list.runs.map(r => fetch(`/api/runs/${encodeURIComponent(r.id)}`).then(x => x.json())));
    const focused = document.activeElement && document.activeElement.id;
    $('runs').replaceChildren(...details.map(render));
    if (focused && $(focused)) $(focused).focus();
    const count = `${list.runs.length} run${list.runs.length === 1 ? '' : 's'}.`;
    if ($('runs-status').textContent !== count) $('runs-status').textContent = count;  // announced only when it changes
    $('runs-updated').textContent = `Refreshed ${new Date().toLocaleTimeString()}; the page refreshes every 2 seconds.`;
  } catch (e) {
    $('runs-status').textContent = 'Could not read the runs: ' + e.message;
  }
}

refresh();
setInterval(refresh, 2000);
