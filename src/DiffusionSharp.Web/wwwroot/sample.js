'use strict';
// Sample page: fills the form from /api/models, streams /api/sample (server-sent events over fetch, so a 400 keeps its message).
const $ = id => document.getElementById(id);
let models = [];
let controller = null;
let maxSteps = 1000;

function option(value, text, disabled) {
  const o = document.createElement('option');
  o.value = value; o.textContent = text; o.disabled = !!disabled;
  return o;
}

function syncOutputs() {
  for (const id of ['steps', 'guidance', 'count']) $(id + '-out').textContent = $(id).value;
}

function currentModel() { return models.find(m => m.id === $('model').value); }

function updateModel() {
  const m = currentModel();
  const cls = $('class');
  cls.replaceChildren();
  if (!m || m.error) { cls.append(option('', '(model not loadable)')); cls.disabled = true; return; }
  if (m.classes.length === 0) {
    cls.append(option('', '(unconditional model)'));
    cls.disabled = true;
  } else {
    cls.disabled = false;
    cls.append(option('', 'Every class in turn'));
    m.classes.forEach(c => cls.append(option(c, c)));
  }
  $('guidance').disabled = !m.guidance;
  if (!m.guidance) $('guidance').value = 1;
  // the slider spans what a discrete-time sampler can use; the API takes up to the CLI's limit
  $('steps').max = Math.min(m.trainSteps, maxSteps);
  syncOutputs();
}

async function init() {
  try {
    const r = await fetch('/api/models');
    const data = await r.json();
    models = data.models;
    $('model').replaceChildren(...models.map(m => option(m.id, m.error ? m.label + ' (cannot load)' : m.label, m.error)));
    $('sampler').replaceChildren(...data.samplers.map(s => option(s.name, `${s.name}: ${s.description}`)));
    $('count').max = Math.min(data.limits.maxCount, 64);
    maxSteps = data.limits.maxSteps;
    const first = models.find(m => !m.error);
    if (first) $('model').value = first.id;
    updateModel();
    if (!first) showError('No model to sample: start the server with --models DIR or install the bundled model.');
  } catch (e) {
    showError('Could not load the model list: ' + e.message);
  }
}

function showError(message) {
  const p = $('form-error');
  p.textContent = message;
  p.hidden = !message;
}

function setBusy(busy) {
  $('generate').disabled = busy;
  $('cancel').disabled = !busy;
  $('form').setAttribute('aria-busy', busy ? 'true' : 'false');
}

function status(text) { $('status').textContent = text; }

function showImages(data) {
  const gallery = $('gallery');
  gallery.replaceChildren();
  data.images.forEach((src, i) => {
    const li = document.createElement('li');
    const fig = document.createElement('figure');
    const img = document.createElement('img');
    img.src = src;
    img.alt = `Image ${i + 1} of ${data.images.length}` + (data.className ? `, class ${data.className}` : '');
    const cap = document.createElement('figcaption');
    const a = document.createElement('a');
    a.href = src; a.download = `${String(i).padStart(5, '0')}.png`;
    a.textContent = `PNG ${i + 1}`;
    a.setAttribute('aria-label', `Download image ${i + 1} (PNG)`);
    cap.append(a);
    fig.append(img, cap);
    li.append(fig);
    gallery.append(li);
  });
  $('gallery-empty').hidden = data.images.length > 0;
  $('grid-download').href = data.grid;
  $('grid-link').hidden = false;
  $('command').textContent = data.command;
  $('command-box').hidden = false;
}

function handle(event, data) {
  if (event === 'queued') {
    status(data.position === 1 ? 'Waiting: your job is next in the queue.' : `Waiting in the queue: position ${data.position}.`);
  } else if (event === 'started') {
    status(`Sampling ${data.count} image${data.count === 1 ? '' : 's'}…`);
  } else if (event === 'step') {
    $('progress').value = data.total ? data.done / data.total : 0;
    const img = $('preview');
    img.src = data.image;
    img.alt = `Predicted x0 after network evaluation ${data.done} of ${data.total}`;
    img.hidden = false;
    $('preview-caption').textContent = `Predicted x₀ after step ${data.done} of ${data.total}`;
  } else if (event === 'done') {
    $('progress').value = 1;
    data.className = $('class').value;
    showImages(data);
    status(`Done: ${data.images.length} image${data.images.length === 1 ? '' : 's'}.`);
  } else if (event === 'error') {
    showError(data.message);
    status('Failed.');
  }
}

async function readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) handle(event, JSON.parse(data));
    }
  }
}

async function generate(ev) {
  ev.preventDefault();
  showError('');
  const params = new URLSearchParams({
    model: $('model').value, sampler: $('sampler').value, steps: $('steps').value,
    guidance: $('guidance').value, seed: $('seed').value || '0', count: $('count').value,
  });
  if ($('class').value) params.set('class', $('class').value);
  controller = new AbortController();
  setBusy(true);
  $('progress').value = 0;
  status('Sending…');
  try {
    const r = await fetch('/api/sample?' + params, { signal: controller.signal, headers: { Accept: 'text/event-stream' } });
    if (!r.ok) {
      const body = await r.json().catch(() => ({ error: r.statusText }));
      showError(body.error || `Request failed (${r.status}).`);
      status('Not started.');
    } else {
      await readEvents(r);
    }
  } catch (e) {
    if (e.name === 'AbortError') status('Cancelled.');
    else { showError('Connection failed: ' + e.message); status('Failed.'); }
  } finally {
    controller = null;
    setBusy(false);
  }
}

$('form').addEventListener('submit', generate);
$('cancel').addEventListener('click', () => controller && controller.abort());
$('model').addEventListener('change', updateModel);
for (const id of ['steps', 'guidance', 'count']) $(id).addEventListener('input', syncOutputs);
$('random-seed').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 2 ** 31); });
$('copy').addEventListener('click', async () => {
  try { await navigator.clipboard.writeText($('command').textContent); status('Command copied.'); }
  catch { status('Copy failed: select the command and copy it by hand.'); }
});
init();
