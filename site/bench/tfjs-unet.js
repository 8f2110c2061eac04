// model/unet.go's U-Net in TensorFlow.js, built from the parameters asbm.params(net) returns (the
// Go names and layouts: conv weights [cout, cin, k, k], linear weights [in, out]), for the
// side-by-side benchmark. It follows forwardUNet op by op (the op list of UNetOps), in NHWC, the
// layout every tfjs backend is fastest in; inputs and outputs are NCHW like the project's.

// ops returns the U-Net's op list (model.UNetOps) for arch (info().arch's names).
export function unetOps(a) {
  const L = a.mults.length;
  const ch = (l) => a.base * a.mults[l];
  const ops = [{ kind: 'in', out: ch(0) }];
  let c = ch(0);
  const skips = [];
  for (let l = 0; l < L; l++) {
    for (let i = 0; i < a.resBlocks; i++) {
      ops.push({ kind: 'res', block: `down${l}.${i}`, cin: c, cout: ch(l) });
      c = ch(l);
    }
    ops.push({ kind: 'push' });
    skips.push(c);
    if (l < L - 1) ops.push({ kind: 'pool' });
  }
  ops.push({ kind: 'res', block: 'mid', cin: c, cout: c });
  for (let l = L - 1; l >= 0; l--) {
    ops.push({ kind: 'concat' });
    c += skips[l];
    for (let i = 0; i < a.resBlocks; i++) {
      ops.push({ kind: 'res', block: `up${l}.${i}`, cin: c, cout: ch(l) });
      c = ch(l);
    }
    if (l > 0) ops.push({ kind: 'up' });
  }
  ops.push({ kind: 'out' });
  return ops;
}

// buildUNet uploads the parameters P ({name: Float32Array}) once and returns forward(t, x): t a
// Float32Array of n times, x one of n·C·H·W values (NCHW); it returns the output as a tf.Tensor of
// shape [n, C, H, W] (the caller reads it back and disposes it).
export function buildUNet(tf, arch, P) {
  const eps = 1e-5; // model.GroupNormEps
  const G = arch.groups;
  const need = (name) => {
    if (!P[name]) throw new Error(`tfjs U-Net: parameter ${name} missing`);
    return P[name];
  };
  const vec = (name) => tf.tensor1d(need(name));
  // conv weights [cout, cin, k, k] → tfjs filters [k, k, cin, cout].
  const filt = (name, cout, cin, k) => tf.tidy(() => tf.transpose(tf.tensor4d(need(name), [cout, cin, k, k]), [2, 3, 1, 0]));
  const W = {};
  const conv = (name, cin, cout, k) => { W[name + '.w'] = filt(name + '.w', cout, cin, k); W[name + '.b'] = vec(name + '.b'); };
  const lin = (name, i, o) => { W[name + '.w'] = tf.tensor2d(need(name + '.w'), [i, o]); W[name + '.b'] = vec(name + '.b'); };
  const gn = (name) => { W[name + '.g'] = vec(name + '.g'); W[name + '.b'] = vec(name + '.b'); };
  const F = arch.fourier;
  const T = arch.timeEmb;
  const ops = unetOps(arch);
  conv('in', arch.channels, ops[0].out, 3);
  lin('temb.l1', 2 * F, T);
  lin('temb.l2', T, T);
  let last = ops[0].out;
  for (const op of ops) {
    if (op.kind !== 'res') continue;
    const p = op.block + '.';
    gn(p + 'gn1');
    conv(p + 'conv1', op.cin, op.cout, 3);
    lin(p + 'temb', T, op.cout);
    gn(p + 'gn2');
    conv(p + 'conv2', op.cout, op.cout, 3);
    if (op.cin !== op.cout) conv(p + 'skip', op.cin, op.cout, 1);
    last = op.cout;
  }
  gn('out.gn');
  conv('out', last, arch.channels, 3);

  const silu = (h) => tf.mul(h, tf.sigmoid(h));
  const conv2d = (h, name) => tf.add(tf.conv2d(h, W[name + '.w'], 1, 'same'), W[name + '.b']);
  const groupNorm = (h, name) => {
    const [n, hh, ww, c] = h.shape;
    const g = tf.reshape(h, [n, hh * ww, G, c / G]);
    const { mean, variance } = tf.moments(g, [1, 3], true);
    const y = tf.reshape(tf.div(tf.sub(g, mean), tf.sqrt(tf.add(variance, eps))), [n, hh, ww, c]);
    return tf.add(tf.mul(y, W[name + '.g']), W[name + '.b']);
  };
  const linear = (h, name) => tf.add(tf.matMul(h, W[name + '.w']), W[name + '.b']);

  function forward(t, x) {
    const n = t.length;
    const { channels: C, height: H, width: Wd } = arch;
    return tf.tidy(() => {
      // Fourier time features sin(ω_k t), cos(ω_k t), ω_k = π(k+1) (model.TimeFeatures), in float64 like Go.
      const feat = new Float32Array(n * 2 * F);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < F; k++) {
          const a = Math.PI * (k + 1) * t[i];
          feat[i * 2 * F + k] = Math.sin(a);
          feat[i * 2 * F + F + k] = Math.cos(a);
        }
      }
      const e = silu(linear(silu(linear(tf.tensor2d(feat, [n, 2 * F]), 'temb.l1')), 'temb.l2'));
      let h = tf.transpose(tf.tensor4d(x, [n, C, H, Wd]), [0, 2, 3, 1]);
      const skips = [];
      let y;
      for (const op of ops) {
        switch (op.kind) {
          case 'in': h = conv2d(h, 'in'); break;
          case 'res': {
            const p = op.block + '.';
            let r = conv2d(silu(groupNorm(h, p + 'gn1')), p + 'conv1');
            r = tf.add(r, tf.reshape(linear(e, p + 'temb'), [n, 1, 1, op.cout]));
            r = conv2d(silu(groupNorm(r, p + 'gn2')), p + 'conv2');
            const skip = op.cin !== op.cout ? conv2d(h, p + 'skip') : h;
            h = tf.add(skip, r);
            break;
          }
          case 'push': skips.push(h); break;
          case 'pool': h = tf.avgPool(h, 2, 2, 'valid'); break;
          case 'up': h = tf.image.resizeNearestNeighbor(h, [h.shape[1] * 2, h.shape[2] * 2]); break;
          case 'concat': h = tf.concat([h, skips.pop()], 3); break;
          case 'out': y = conv2d(silu(groupNorm(h, 'out.gn')), 'out'); break;
        }
      }
      return tf.transpose(y, [0, 3, 1, 2]);
    });
  }
  forward.dispose = () => { for (const k in W) W[k].dispose(); };
  return forward;
}
