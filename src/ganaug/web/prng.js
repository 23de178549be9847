// Deterministic noise for the generator, reproducible in any language.
//
// z = gaussianNoise(seed, count): a mulberry32 stream seeded with the 32-bit seed gives uniforms
// u = (x + 0.5) / 2^32 (never 0 or 1); each pair (u1, u2) becomes two standard normals by
// Box-Muller: r = sqrt(-2 ln u1), z[2k] = r cos(2 pi u2), z[2k+1] = r sin(2 pi u2) (computed in
// float64, stored as float32). Sample i of a grid uses z[i*z_dim : (i+1)*z_dim], so one seed gives
// the same noise for every class. tests/test_browser.py re-implements this in Python.

const TWO_32 = 4294967296;

export function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

export function gaussianNoise(seed, count) {
  const next = mulberry32(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u1 = (next() + 0.5) / TWO_32;
    const u2 = (next() + 0.5) / TWO_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    out[i] = r * Math.cos(theta);
    if (i + 1 < count) out[i + 1] = r * Math.sin(theta);
  }
  return out;
}

export const MAX_SEED = TWO_32 - 1;
