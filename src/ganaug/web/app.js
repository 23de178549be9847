// ganaug demo: two views over the ONNX models `ganaug demo` lists in models.json.
// Everything runs here, in onnxruntime-web's single-threaded WebAssembly backend.
//
// For tests and the curious, window.ganaugDemo exposes the state of the last inference of each
// view (inputs and outputs as typed arrays) and classifyPixels(values) to classify a 28x28 image.

import { gaussianNoise, MAX_SEED } from './prng.js';

const SIDE = 28;
const PIXELS = SIDE * SIDE;
const GRID_COLUMNS = 8;
const GRID_ROWS = 8; // one class: 8x8 samples; every class: one row of 8 per class
const GAP = 2; // pixels between samples in the grid canvas
const DRAW_SIDE = 280; // the drawing canvas is averaged down by 10x10 blocks to 28x28

const $ = (id) => document.getElementById(id);

const demo = {
  ready: false,
  generated: 0,
  classified: 0,
  last: { generate: null, classify: null },
  classifyPixels: null,
  ortVersion: null,
};
window.ganaugDemo = demo;

let ort = null;
let index = { classifiers: [], generators: [] };
const sessions = new Map(); // model URL -> Promise<InferenceSession>

// ---------------------------------------------------------------- helpers

function showError(message, error) {
  const banner = $('error');
  banner.textContent = message;
  banner.hidden = false;
  console.error(message, error ?? '');
}

function clearError() {
  $('error').hidden = true;
}

// Run the latest request only: while one inference runs, further calls collapse into one rerun.
function latestOnly(task) {
  let running = null;
  let again = false;
  return function run() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      try {
        do {
          again = false;
          await task();
        } while (again);
      } finally {
        running = null;
      }
    })();
    return running;
  };
}

function session(url) {
  if (!sessions.has(url)) {
    const created = (async () => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      return ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
    })();
    created.catch(() => sessions.delete(url));
    sessions.set(url, created);
  }
  return sessions.get(url);
}

function fillSelect(select, items, label) {
  select.replaceChildren(...items.map((item, i) => {
    const option = document.createElement('option');
    option.value = String(i);
    option.textContent = label(item);
    return option;
  }));
  select.disabled = items.length === 0;
}

function softmax(logits) {
  const max = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return Float32Array.from(exps, (v) => v / sum);
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

function putGray(ctx, values, offset, x, y) {
  const image = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < PIXELS; i++) {
    const v = Math.round(Math.min(1, Math.max(0, values[offset + i])) * 255);
    image.data[4 * i] = v;
    image.data[4 * i + 1] = v;
    image.data[4 * i + 2] = v;
    image.data[4 * i + 3] = 255;
  }
  ctx.putImageData(image, x, y);
}

// ---------------------------------------------------------------- tabs

const tabs = [$('tab-generate'), $('tab-classify')];

function selectView(name, focus = false) {
  for (const tab of tabs) {
    const selected = tab.id === `tab-${name}`;
    tab.setAttribute('aria-selected', String(selected));
    tab.tabIndex = selected ? 0 : -1;
    $(tab.getAttribute('aria-controls')).hidden = !selected;
    if (selected && focus) tab.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
}

for (const tab of tabs) {
  tab.addEventListener('click', () => selectView(tab.id.slice(4)));
  tab.addEventListener('keydown', (event) => {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    const other = tabs[(tabs.indexOf(tab) + 1) % tabs.length];
    selectView(other.id.slice(4), true);
    event.preventDefault();
  });
}
window.addEventListener('hashchange', () => selectView(location.hash === '#classify' ? 'classify' : 'generate'));

// ---------------------------------------------------------------- generate

const gen = {
  model: $('gen-model'), cls: $('gen-class'), seed: $('gen-seed'),
  canvas: $('gen-grid'), labels: $('gen-row-labels'), status: $('gen-status'),
};

function currentGenerator() {
  return index.generators[Number(gen.model.value)] ?? null;
}

function readSeed() {
  const value = Math.floor(Number(gen.seed.value));
  const seed = Number.isFinite(value) ? Math.min(MAX_SEED, Math.max(0, value)) : 0;
  gen.seed.value = String(seed);
  return seed;
}

function setSeed(seed) {
  gen.seed.value = String(((seed % (MAX_SEED + 1)) + (MAX_SEED + 1)) % (MAX_SEED + 1));
  runGenerate();
}

function fillClasses() {
  const model = currentGenerator();
  const previous = gen.cls.value;
  const names = model ? model.class_names : [];
  fillSelect(gen.cls, ['every class (one row each)', ...names], (name) => name);
  // value "0" is the every-class grid; class i is value i + 1
  gen.cls.value = previous && Number(previous) <= names.length ? previous : '1';
}

const runGenerate = latestOnly(async () => {
  const model = currentGenerator();
  if (!model) return;
  const seed = readSeed();
  const choice = Number(gen.cls.value);
  const classes = model.class_names.length;
  const rows = choice === 0 ? classes : GRID_ROWS;
  const count = rows * GRID_COLUMNS;
  const labels = Array.from({ length: count },
    (_, i) => (choice === 0 ? Math.floor(i / GRID_COLUMNS) : choice - 1));
  const z = gaussianNoise(seed, count * model.z_dim);
  try {
    const net = await session(model.url);
    const started = performance.now();
    const feeds = {
      z: new ort.Tensor('float32', z, [count, model.z_dim]),
      label: new ort.Tensor('int64', BigInt64Array.from(labels, BigInt), [count]),
    };
    const result = await net.run(feeds);
    const ms = performance.now() - started;
    const image = result.image.data;
    drawGrid(image, rows);
    gen.labels.replaceChildren(...(choice === 0 ? model.class_names.map((name) => {
      const span = document.createElement('span');
      span.textContent = name;
      return span;
    }) : []));
    gen.labels.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
    const what = choice === 0 ? `every class (rows: ${model.class_names.join(', ')})` : model.class_names[choice - 1];
    gen.canvas.setAttribute('aria-label', `${count} generated samples of ${what}, seed ${seed}`);
    gen.status.textContent = `${count} samples of ${choice === 0 ? 'every class' : what} · seed ${seed} · `
      + `${model.name} · ${ms.toFixed(0)} ms`;
    demo.last.generate = { model: model.name, url: model.url, seed, labels, z, zDim: model.z_dim, image };
    demo.generated += 1;
    clearError();
  } catch (error) {
    showError(`Could not run ${model.name}: ${error.message ?? error}`, error);
  }
});

function drawGrid(image, rows) {
  const width = GRID_COLUMNS * (SIDE + GAP) + GAP;
  const height = rows * (SIDE + GAP) + GAP;
  if (gen.canvas.width !== width || gen.canvas.height !== height) {
    gen.canvas.width = width;
    gen.canvas.height = height;
  }
  const ctx = gen.canvas.getContext('2d');
  ctx.fillStyle = '#11141b';
  ctx.fillRect(0, 0, width, height);
  for (let i = 0; i < rows * GRID_COLUMNS; i++) {
    const x = GAP + (i % GRID_COLUMNS) * (SIDE + GAP);
    const y = GAP + Math.floor(i / GRID_COLUMNS) * (SIDE + GAP);
    putGray(ctx, image, i * PIXELS, x, y);
  }
}

gen.model.addEventListener('change', () => { fillClasses(); describe(); runGenerate(); });
gen.cls.addEventListener('change', () => runGenerate());
gen.seed.addEventListener('change', () => runGenerate());
gen.seed.addEventListener('keydown', (event) => { if (event.key === 'Enter') runGenerate(); });
$('gen-prev').addEventListener('click', () => setSeed(readSeed() - 1));
$('gen-next').addEventListener('click', () => setSeed(readSeed() + 1));
$('gen-random').addEventListener('click', () => setSeed(Math.floor(Math.random() * (MAX_SEED + 1))));
document.addEventListener('keydown', (event) => {
  if ($('view-generate').hidden || event.altKey || event.ctrlKey || event.metaKey) return;
  const target = event.target;
  if (target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target.getAttribute?.('role') === 'tab') return;
  if (event.key === 'ArrowLeft') setSeed(readSeed() - 1);
  else if (event.key === 'ArrowRight') setSeed(readSeed() + 1);
});

// ---------------------------------------------------------------- classify

const cls = {
  model: $('cls-model'), canvas: $('cls-canvas'), input: $('cls-input'), bars: $('cls-bars'),
  status: $('cls-status'), brush: $('cls-brush'), zone: $('drop-zone'),
};
const drawCtx = cls.canvas.getContext('2d', { willReadFrequently: true });
let hasInk = false;

function currentClassifier() {
  return index.classifiers[Number(cls.model.value)] ?? null;
}

function clearCanvas() {
  drawCtx.fillStyle = '#000';
  drawCtx.fillRect(0, 0, DRAW_SIDE, DRAW_SIDE);
  hasInk = false;
}

// What the model sees: the drawing's luminance averaged over 10x10 blocks, in [0, 1].
function modelInput() {
  const { data } = drawCtx.getImageData(0, 0, DRAW_SIDE, DRAW_SIDE);
  const block = DRAW_SIDE / SIDE;
  const out = new Float32Array(PIXELS);
  for (let y = 0; y < DRAW_SIDE; y++) {
    for (let x = 0; x < DRAW_SIDE; x++) {
      const p = 4 * (y * DRAW_SIDE + x);
      const gray = 0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2];
      out[Math.floor(y / block) * SIDE + Math.floor(x / block)] += gray;
    }
  }
  for (let i = 0; i < PIXELS; i++) out[i] = out[i] / (block * block * 255);
  return out;
}

function renderBars(model, probs) {
  const top = probs ? argmax(probs) : -1;
  cls.bars.replaceChildren(...model.class_names.map((name, i) => {
    const li = document.createElement('li');
    li.className = i === top ? 'top' : '';
    const label = document.createElement('span');
    label.className = 'name';
    label.textContent = name;
    label.title = name;
    const track = document.createElement('span');
    track.className = 'track';
    track.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.className = 'fill';
    fill.style.width = `${probs ? (probs[i] * 100).toFixed(2) : 0}%`;
    track.append(fill);
    const pct = document.createElement('span');
    pct.className = 'pct';
    pct.textContent = probs ? `${(probs[i] * 100).toFixed(1)}%` : '–';
    li.append(label, track, pct);
    return li;
  }));
}

const runClassify = latestOnly(async () => {
  const model = currentClassifier();
  if (!model) return;
  const input = modelInput();
  putGray(cls.input.getContext('2d'), input, 0, 0, 0);
  if (!hasInk) {
    renderBars(model, null);
    cls.status.textContent = 'Draw something, or drop an image.';
    return;
  }
  try {
    const net = await session(model.url);
    const started = performance.now();
    const result = await net.run({ image: new ort.Tensor('float32', input, [1, 1, SIDE, SIDE]) });
    const ms = performance.now() - started;
    const logits = Float32Array.from(result.logits.data);
    const probs = softmax(logits);
    const top = argmax(probs);
    renderBars(model, probs);
    cls.status.textContent = `${model.name} says ${model.class_names[top]} `
      + `(${(probs[top] * 100).toFixed(1)}%) · ${ms.toFixed(0)} ms`;
    demo.last.classify = { model: model.name, url: model.url, input, logits, probs, top };
    demo.classified += 1;
    clearError();
  } catch (error) {
    showError(`Could not run ${model.name}: ${error.message ?? error}`, error);
  }
});

// Drawing with any pointer (mouse, pen, touch): round strokes of white on black.
let last = null;
let frame = 0;

function canvasPoint(event) {
  const rect = cls.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * (DRAW_SIDE / rect.width),
    (event.clientY - rect.top) * (DRAW_SIDE / rect.height)];
}

function strokeTo(point) {
  drawCtx.strokeStyle = '#fff';
  drawCtx.fillStyle = '#fff';
  drawCtx.lineWidth = Number(cls.brush.value);
  drawCtx.lineCap = 'round';
  drawCtx.lineJoin = 'round';
  drawCtx.beginPath();
  if (last) {
    drawCtx.moveTo(...last);
    drawCtx.lineTo(...point);
    drawCtx.stroke();
  } else {
    drawCtx.arc(point[0], point[1], drawCtx.lineWidth / 2, 0, 2 * Math.PI);
    drawCtx.fill();
  }
  last = point;
  hasInk = true;
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; runClassify(); });
}

cls.canvas.addEventListener('pointerdown', (event) => {
  if (event.button !== 0) return;
  cls.canvas.setPointerCapture(event.pointerId);
  last = null;
  strokeTo(canvasPoint(event));
  event.preventDefault();
});
cls.canvas.addEventListener('pointermove', (event) => {
  if (!cls.canvas.hasPointerCapture(event.pointerId)) return;
  for (const e of event.getCoalescedEvents?.() ?? [event]) strokeTo(canvasPoint(e));
});
const endStroke = () => { last = null; runClassify(); };
cls.canvas.addEventListener('pointerup', endStroke);
cls.canvas.addEventListener('pointercancel', endStroke);

$('cls-clear').addEventListener('click', () => { clearCanvas(); runClassify(); });
cls.model.addEventListener('change', () => { describe(); runClassify(); });

// An image file: fitted into the square; a light background is inverted to light-on-dark.
async function loadImage(file) {
  if (!file || !file.type.startsWith('image/')) {
    showError(`${file ? file.name : 'That'} is not an image file.`);
    return;
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch (error) {
    showError(`Could not read ${file.name} as an image.`, error);
    return;
  }
  const light = borderMean(bitmap) > 0.5;
  const scale = Math.min(DRAW_SIDE / bitmap.width, DRAW_SIDE / bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  drawCtx.fillStyle = light ? '#fff' : '#000';
  drawCtx.fillRect(0, 0, DRAW_SIDE, DRAW_SIDE);
  // Whole-number upscales (a 28x28 image becomes exact 10x10 blocks) stay sharp.
  drawCtx.imageSmoothingEnabled = !Number.isInteger(scale);
  drawCtx.drawImage(bitmap, (DRAW_SIDE - w) / 2, (DRAW_SIDE - h) / 2, w, h);
  drawCtx.imageSmoothingEnabled = true;
  bitmap.close();
  if (light) {
    const pixels = drawCtx.getImageData(0, 0, DRAW_SIDE, DRAW_SIDE);
    for (let i = 0; i < pixels.data.length; i += 4) {
      pixels.data[i] = 255 - pixels.data[i];
      pixels.data[i + 1] = 255 - pixels.data[i + 1];
      pixels.data[i + 2] = 255 - pixels.data[i + 2];
    }
    drawCtx.putImageData(pixels, 0, 0);
  }
  hasInk = true;
  await runClassify();
}

function borderMean(bitmap) {
  const side = 64;
  const probe = new OffscreenCanvas(side, side).getContext('2d', { willReadFrequently: true });
  probe.fillStyle = '#000';
  probe.fillRect(0, 0, side, side);
  probe.drawImage(bitmap, 0, 0, side, side);
  const { data } = probe.getImageData(0, 0, side, side);
  let sum = 0;
  let n = 0;
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      if (x > 0 && y > 0 && x < side - 1 && y < side - 1) continue;
      const p = 4 * (y * side + x);
      sum += (0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2]) / 255;
      n += 1;
    }
  }
  return sum / n;
}

$('cls-file').addEventListener('change', (event) => {
  loadImage(event.target.files[0]);
  event.target.value = '';
});
for (const type of ['dragenter', 'dragover']) {
  cls.zone.addEventListener(type, (event) => { event.preventDefault(); cls.zone.classList.add('dragging'); });
}
for (const type of ['dragleave', 'drop']) {
  cls.zone.addEventListener(type, () => cls.zone.classList.remove('dragging'));
}
cls.zone.addEventListener('drop', (event) => {
  event.preventDefault();
  loadImage(event.dataTransfer.files[0]);
});

// 784 values in [0, 1], row-major: drawn into the canvas as 10x10 blocks, then classified.
demo.classifyPixels = async (values) => {
  if (values.length !== PIXELS) throw new Error(`expected ${PIXELS} values, got ${values.length}`);
  const image = drawCtx.createImageData(DRAW_SIDE, DRAW_SIDE);
  const block = DRAW_SIDE / SIDE;
  for (let y = 0; y < DRAW_SIDE; y++) {
    for (let x = 0; x < DRAW_SIDE; x++) {
      const v = Math.round(Math.min(1, Math.max(0, values[Math.floor(y / block) * SIDE + Math.floor(x / block)])) * 255);
      const p = 4 * (y * DRAW_SIDE + x);
      image.data[p] = v;
      image.data[p + 1] = v;
      image.data[p + 2] = v;
      image.data[p + 3] = 255;
    }
  }
  drawCtx.putImageData(image, 0, 0);
  hasInk = true;
  await runClassify();
  return demo.last.classify;
};

// ---------------------------------------------------------------- start

function describe() {
  const g = currentGenerator();
  $('gen-model-info').textContent = g ? `${g.architecture} · ${g.dataset} · z_dim ${g.z_dim}` : '';
  const c = currentClassifier();
  $('cls-model-info').textContent = !c ? '' : [c.architecture, c.dataset,
    c.test_accuracy === undefined ? null : `test accuracy ${(c.test_accuracy * 100).toFixed(1)}%`]
    .filter(Boolean).join(' · ');
}

async function start() {
  selectView(location.hash === '#classify' ? 'classify' : 'generate');
  clearCanvas();
  try {
    ort = await import('./ort/ort.wasm.min.mjs');
  } catch (error) {
    showError('Could not load onnxruntime-web from this server (./ort/). Is `ganaug demo` running?', error);
    return;
  }
  ort.env.wasm.numThreads = 1; // no SharedArrayBuffer, so no cross-origin isolation headers needed
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href; // served locally, never a CDN
  demo.ortVersion = ort.env.versions?.web ?? null;
  $('runtime-info').textContent = demo.ortVersion ? `onnxruntime-web ${demo.ortVersion}` : '';
  try {
    const response = await fetch('models.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    index = await response.json();
  } catch (error) {
    showError(`Could not read the model list (models.json): ${error.message ?? error}`, error);
    return;
  }

  fillSelect(gen.model, index.generators, (m) => m.name);
  fillClasses();
  $('gen-empty').hidden = index.generators.length > 0;
  for (const id of ['gen-prev', 'gen-next', 'gen-random', 'gen-seed']) $(id).disabled = index.generators.length === 0;
  if (!index.generators.length) gen.status.textContent = 'No generator to show.';

  fillSelect(cls.model, index.classifiers, (m) => m.name);
  $('cls-empty').hidden = index.classifiers.length > 0;
  if (index.classifiers.length) renderBars(index.classifiers[0], null);
  else cls.status.textContent = 'No classifier to show.';

  describe();
  await Promise.all([runGenerate(), runClassify()]);
  demo.ready = true;
  document.documentElement.dataset.ready = 'true';
}

start();
